"""``python -m lmstream``: the command line."""

import sys

from lmstream.cli import main

sys.exit(main())
