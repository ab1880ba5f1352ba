"""Splitting reasoning out of a model's text: ``<think>...</think>`` goes to its own channel.

Pure and incremental: ``feed(text)`` returns ``(reasoning, content)`` for that piece, holding
back only what could be the start of a tag until the next piece decides it. Used by the text
models' ``ReasoningParser`` and by anything else that reads text with reasoning in it.
"""

from __future__ import annotations

from lmstream.errors import InvalidInputError

__all__ = ["ReasoningSplitter"]


def _held(text: str, tag: str) -> int:
    """How many characters at the end of ``text`` could begin ``tag``."""
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:size]):
            return size
    return 0


class ReasoningSplitter:
    """Routes text between ``open_tag`` and ``close_tag`` to reasoning, the rest to content.

    Tags may open and close any number of times and fall across any chunk boundary. With
    ``leading_only=True`` only a block at the very start (after whitespace) counts, so a
    literal ``<think>`` later in the answer stays content.
    """

    def __init__(
        self,
        open_tag: str = "<think>",
        close_tag: str = "</think>",
        *,
        leading_only: bool = False,
    ) -> None:
        if not open_tag or not close_tag:
            raise InvalidInputError("the reasoning tags must not be empty")
        self.open_tag = open_tag
        self.close_tag = close_tag
        self.leading_only = leading_only
        self._inside = False
        self._pending = ""
        self._seen_content = False
        self._trim = False

    def feed(self, text: str) -> tuple[str, str]:
        """``(reasoning, content)`` for this piece of text."""
        text = self._pending + text
        self._pending = ""
        reasoning: list[str] = []
        content: list[str] = []
        while text:
            tag = self.close_tag if self._inside else self.open_tag
            at = text.find(tag)
            if not self._inside and self.leading_only:
                head = text if at < 0 else text[:at]
                if self._seen_content or head.strip():  # past the start: all content
                    self._route(text, reasoning, content)
                    self._seen_content = True
                    break
            if at >= 0:
                self._route(text[:at], reasoning, content)
                self._inside = not self._inside
                self._seen_content = self._seen_content or not self._inside
                text = text[at + len(tag) :]
                self._trim = not self._inside  # the answer after a block starts trimmed
                continue
            hold = _held(text, tag)
            self._route(text[: len(text) - hold], reasoning, content)
            self._pending = text[len(text) - hold :]
            break
        return "".join(reasoning), "".join(content)

    def _route(self, text: str, reasoning: list[str], content: list[str]) -> None:
        if not text:
            return
        if self._inside:
            reasoning.append(text)
            return
        if self._trim:
            text = text.lstrip()
            if not text:
                return
            self._trim = False
        content.append(text)
        if text.strip():
            self._seen_content = True

    def flush(self) -> tuple[str, str]:
        """What is held back at the end of the stream (an unfinished tag is plain text)."""
        text, self._pending = self._pending, ""
        if self._inside:
            return text, ""
        return "", text.lstrip() if self._trim else text
