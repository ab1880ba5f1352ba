"""Stop sequences found in time linear in the text, whatever their number and length.

An Aho-Corasick automaton over the stop sequences: feeding it a chunk costs a bounded
amount of work per character of the chunk, and its state is, at every point, the longest
end of the text so far that could still grow into a stop sequence (the text to hold back).
Pure code, no I/O.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from functools import lru_cache

__all__ = ["StopMatcher", "matcher"]


class StopMatcher:
    """The automaton for one list of stop sequences (state 0 is the empty text)."""

    __slots__ = ("depth", "fail", "goto", "longest")

    def __init__(self, stops: Sequence[str]) -> None:
        self.goto: list[dict[str, int]] = [{}]
        self.depth = [0]
        self.longest = [0]  # length of the longest stop sequence ending at this state
        for stop in stops:
            node = 0
            for char in stop:
                child = self.goto[node].get(char)
                if child is None:
                    child = len(self.goto)
                    self.goto[node][char] = child
                    self.goto.append({})
                    self.depth.append(self.depth[node] + 1)
                    self.longest.append(0)
                node = child
            self.longest[node] = len(stop)
        self.fail = [0] * len(self.goto)
        self._link()

    def _link(self) -> None:
        """Failure links, breadth first: each state's longest proper suffix that is a state."""
        queue = deque(self.goto[0].values())
        while queue:
            node = queue.popleft()
            for char, child in self.goto[node].items():
                back = self.fail[node]
                while back and char not in self.goto[back]:
                    back = self.fail[back]
                self.fail[child] = self.goto[back].get(char, 0)
                if not self.longest[child]:
                    self.longest[child] = self.longest[self.fail[child]]
                queue.append(child)

    def advance(self, node: int, text: str) -> tuple[int, int | None]:
        """Feed ``text`` from state ``node``: the new state, and where the earliest complete
        stop sequence ending inside ``text`` starts (relative to ``text``; negative when it
        began in the text fed before), or ``None``."""
        goto, fail, longest = self.goto, self.fail, self.longest
        first: int | None = None
        for index, char in enumerate(text):
            while True:
                child = goto[node].get(char)
                if child is not None:
                    node = child
                    break
                if not node:
                    break
                node = fail[node]
            size = longest[node]
            if size:
                start = index - size + 1
                if first is None or start < first:
                    first = start
        return node, first


@lru_cache(maxsize=64)
def matcher(stops: tuple[str, ...]) -> StopMatcher:
    """The automaton for ``stops``, built once per distinct list."""
    return StopMatcher(stops)
