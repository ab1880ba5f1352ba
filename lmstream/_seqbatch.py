"""Batching a sequence step by step: each step's own ``batch`` gets every input still
alive, as the reference does it, so a step that batches natively (one request for many
prompts) does so inside a chain too. One run per input; each step's call for that
input is a child of it. With ``return_exceptions``, an input that failed at a step
leaves the later steps and its exception takes its place in the results.

The pure bookkeeping lives here; the sync and async shells in ``compose`` drive it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from lmstream._batch import _prepare
from lmstream._types import RunnableConfig
from lmstream.config import child_config
from lmstream.runs import Run

if TYPE_CHECKING:
    from lmstream.runnable import Runnable

__all__ = ["SequenceBatch"]


class SequenceBatch:
    """The state of one sequence batch: runs, values still going, failures so far."""

    def __init__(
        self,
        owner: Runnable[Any, Any],
        inputs: Sequence[Any],
        config: RunnableConfig | Sequence[RunnableConfig] | None,
        return_exceptions: bool,
        kwargs: dict[str, Any],
    ) -> None:
        items, configs, _ = _prepare(inputs, config)
        self.configs = configs
        self.runs = [
            Run(c, owner=owner, name=owner.get_name(), run_type="chain", inputs=item)
            for c, item in zip(configs, items, strict=True)
        ]
        self.values: dict[int, Any] = dict(enumerate(items))
        self.failed: dict[int, BaseException] = {}
        self.return_exceptions = return_exceptions
        self.kwargs = kwargs

    def calls(
        self, steps: Sequence[Runnable[Any, Any]]
    ) -> Iterator[tuple[Runnable[Any, Any], list[Any], list[RunnableConfig], dict[str, Any]]]:
        """For each step while any input is left: the step, the inputs still going and
        their configs (in input order), and the keyword arguments of its ``batch`` (the
        call's kwargs go to the first step only)."""
        for index, step in enumerate(steps):
            alive = sorted(self.values)
            if not alive:
                return
            tag = f"seq:step:{index + 1}"
            configs = [child_config(self.configs[i], self.runs[i].child(tag)) for i in alive]
            kw = {
                **(self.kwargs if index == 0 else {}),
                "return_exceptions": self.return_exceptions,
            }
            yield step, [self.values[i] for i in alive], configs, kw

    def took(self, outputs: Sequence[Any]) -> None:
        """Record a step's outputs."""
        for i, out in zip(sorted(self.values), outputs, strict=True):
            if isinstance(out, Exception) and self.return_exceptions:
                self.failed[i] = out
                del self.values[i]
            else:
                self.values[i] = out

    def results(self) -> list[Any]:
        """Every input's output, or its exception, in input order."""
        return [
            self.failed[i] if i in self.failed else self.values[i] for i in range(len(self.runs))
        ]

    def outcomes(self) -> list[tuple[Run, Any, BaseException | None]]:
        """``(run, output, error)`` for each input, to end its run with."""
        return [
            (run, None, self.failed[i]) if i in self.failed else (run, self.values[i], None)
            for i, run in enumerate(self.runs)
        ]
