"""The data a model produces: chunks, generations, usage, results. Pure, no I/O."""

from __future__ import annotations

from typing import Any, Literal

__all__ = [
    "FinishReason",
    "Generation",
    "GenerationChunk",
    "LLMResult",
    "Usage",
    "merge_info",
]

FinishReason = Literal["stop", "length", "cancelled", "error"]
"""How a generation ended: a stop sequence or end of text, the token limit,
the consumer stopped reading, or the run failed."""


class Usage:
    """Token counts of one run. ``estimated`` is true when counted by lmstream, not the backend."""

    __slots__ = ("completion_tokens", "estimated", "prompt_tokens", "total_tokens")

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    estimated: bool

    def __init__(
        self,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        total_tokens: int = 0,
        estimated: bool = False,
    ) -> None:
        # the slots' own setters: a third of what object.__setattr__ by name costs
        _set_prompt(self, prompt_tokens)
        _set_completion(self, completion_tokens)
        _set_total(self, total_tokens)
        _set_estimated(self, estimated)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Usage is immutable")

    def __reduce__(self) -> tuple[Any, ...]:  # pickle through __init__: no setattr
        return Usage, self._key()

    def _key(self) -> tuple[int, int, int, bool]:
        return (self.prompt_tokens, self.completion_tokens, self.total_tokens, self.estimated)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Usage) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        p, c, t, e = self._key()
        return f"Usage(prompt_tokens={p}, completion_tokens={c}, total_tokens={t}, estimated={e})"

    @classmethod
    def of(cls, prompt_tokens: int, completion_tokens: int, *, estimated: bool = False) -> Usage:
        """Usage with ``total_tokens`` filled in."""
        return cls(prompt_tokens, completion_tokens, prompt_tokens + completion_tokens, estimated)

    def __add__(self, other: Usage) -> Usage:
        if not isinstance(other, Usage):
            return NotImplemented
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.total_tokens + other.total_tokens,
            self.estimated or other.estimated,
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict in OpenAI's shape, plus ``estimated``."""
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
            "estimated": self.estimated,
        }


_set_prompt, _set_completion, _set_total, _set_estimated = (
    vars(Usage)[name].__set__
    for name in ("prompt_tokens", "completion_tokens", "total_tokens", "estimated")
)


def _merge_value(old: Any, new: Any) -> Any:
    if isinstance(old, Usage) and isinstance(new, Usage):
        return old + new
    if isinstance(old, dict) and isinstance(new, dict):
        return merge_info(old, new)
    if isinstance(old, list) and isinstance(new, list):
        return old + new
    return new


def merge_info(left: dict[str, Any] | None, right: dict[str, Any] | None) -> dict[str, Any] | None:
    """Merge generation metadata: scalars keep the last value, usage adds, dicts merge,
    lists concatenate, ``None`` never overwrites. No ``"stopstop"``."""
    if not right:
        return None if left is None else dict(left)
    if not left:
        return {k: v for k, v in right.items() if v is not None}
    out = dict(left)
    for key, value in right.items():
        if value is None:
            continue
        old = out.get(key)
        out[key] = value if old is None else _merge_value(old, value)
    return out


class Generation:
    """One complete candidate output of a model."""

    __slots__ = ("generation_info", "text")

    def __init__(self, text: str = "", generation_info: dict[str, Any] | None = None) -> None:
        self.text = text
        self.generation_info = generation_info

    def __eq__(self, other: object) -> bool:
        return (
            type(other) is type(self)
            and isinstance(other, Generation)
            and self.text == other.text
            and self.generation_info == other.generation_info
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(text={self.text!r}, generation_info={self.generation_info!r})"
        )

    @property
    def type(self) -> str:
        """Always ``"Generation"``, as in the reference schema."""
        return "Generation"

    @property
    def finish_reason(self) -> str | None:
        """Why the generation ended, when known."""
        info = self.generation_info
        return None if info is None else info.get("finish_reason")

    @property
    def usage(self) -> Usage | None:
        """Token counts, when known."""
        info = self.generation_info
        value = None if info is None else info.get("usage")
        return value if isinstance(value, Usage) else None

    def to_dict(self) -> dict[str, Any]:
        """The reference's serialised shape: ``{"text", "generation_info", "type"}``."""
        return {"text": self.text, "generation_info": self.generation_info, "type": "Generation"}


class GenerationChunk(Generation):
    """A piece of a generation; chunks add up with ``+``."""

    __slots__ = ()

    def __add__(self, other: GenerationChunk) -> GenerationChunk:
        if not isinstance(other, GenerationChunk):
            raise TypeError(
                f"unsupported operand type(s) for +: 'GenerationChunk' and '{type(other).__name__}'"
            )
        return GenerationChunk(
            self.text + other.text, merge_info(self.generation_info, other.generation_info)
        )


def _build_fast(*classes: type) -> None:
    """Build ``classes`` without running their ``__init__``, which only stores its
    parameters in slots of the same names, when the C part is installed.

    A provider builds one chunk per token, mostly by keyword; CPython 3.11 turns a keyword
    call of a class with a Python ``__init__`` into a dict and back (~180 ns), where the C
    constructor takes ~45 ns. Subclasses and calls it does not handle take the usual path.
    """
    try:
        from lmstream._speedups import install
    except ImportError:  # installed without a C compiler: same behaviour, built in Python
        return
    for cls in classes:
        code = cls.__init__.__code__  # type: ignore[misc]
        names = code.co_varnames[1 : code.co_argcount]  # the parameters after ``self``
        try:
            install(cls, names, cls.__init__.__defaults__ or ())  # type: ignore[misc]
        except RuntimeError:  # its table is full (classes of many subinterpreters)
            return


_build_fast(Generation, GenerationChunk)


class LLMResult:
    """The result of generating for a list of prompts: one list of candidates per prompt."""

    __slots__ = ("generations", "llm_output", "run")

    def __init__(
        self,
        generations: list[list[Generation]],
        llm_output: dict[str, Any] | None = None,
        run: list[Any] | None = None,
    ) -> None:
        self.generations = generations
        self.llm_output = llm_output
        self.run = run

    def __eq__(self, other: object) -> bool:  # ``run`` is not compared, as in the reference
        return (
            isinstance(other, LLMResult)
            and self.generations == other.generations
            and self.llm_output == other.llm_output
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"LLMResult(generations={self.generations!r}, llm_output={self.llm_output!r})"

    @property
    def type(self) -> str:
        """Always ``"LLMResult"``."""
        return "LLMResult"

    def to_dict(self, *, full: bool = False) -> dict[str, Any]:
        """``{"generations", "llm_output"}``; ``full`` adds ``run`` and ``type`` (v1 shape)."""
        out: dict[str, Any] = {
            "generations": [[g.to_dict() for g in gens] for gens in self.generations],
            "llm_output": self.llm_output,
        }
        if full:
            out["run"] = None
            out["type"] = "LLMResult"
        return out
