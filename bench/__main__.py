"""``python -m bench``: run every benchmark and publish the results (see ``bench.report``).

    python -m bench                       # everything; rewrites docs/benchmarks.md and plots
    python -m bench --quick               # fewer sizes and rounds
    python -m bench --only core,openai    # some parts; the others keep their last results
    python -m bench --render              # re-render the page from the saved results

Each module also runs alone and prints its own tables: ``python -m bench.core``,
``bench.llamacpp``, ``bench.server``, ``bench.openai`` (``--help`` for their options).
"""

from __future__ import annotations

import sys

from bench.report import main

if __name__ == "__main__":
    sys.exit(main())
