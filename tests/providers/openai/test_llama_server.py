"""Against the real ``llama_cpp.server`` serving the embedded SmolLM2 model: token-by-token
streams that add up to the server's own non-streamed answer, the documented programs,
and a real context-length error."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest
from helpers import chunks_of, collect, invoke_of, stream_of, take

from lmstream import ContextLengthError, ProtocolError
from lmstream.providers.openai import OpenAI

PROMPTS = ["The capital of France is", "Once upon a time"]
SPARKLING = "Write me a 1 verse song about sparkling water."


def _server_answer(url: str, prompt: str, max_tokens: int) -> tuple[str, str, int]:
    """The server's own non-streamed answer, asked for without lmstream: its text,
    finish reason and number of tokens."""
    body = {"prompt": prompt, "max_tokens": max_tokens, "temperature": 0}
    answer = httpx.post(f"{url}/completions", json=body, timeout=120).json()
    choice = answer["choices"][0]
    return choice["text"], choice["finish_reason"], answer["usage"]["completion_tokens"]


@pytest.mark.parametrize("prompt", PROMPTS)
def test_streams_token_by_token_what_the_server_answers_whole(
    llama_server: str, flavour: str, prompt: str
) -> None:
    text, reason, tokens = _server_answer(llama_server, prompt, 24)
    with OpenAI(base_url=llama_server, temperature=0, max_tokens=24) as llm:
        chunks = chunks_of(llm, flavour, prompt)
        invoked = invoke_of(llm, flavour, prompt)
    texts = [c.text for c in chunks if c.text]
    assert len(texts) == tokens == 24  # one chunk per token
    assert "".join(texts) == text == invoked
    info = chunks[-1].generation_info
    assert info is not None and info["finish_reason"] == reason == "length"
    assert info["usage"].completion_tokens > 0


def test_logprobs_from_the_real_server(llama_server: str, flavour: str) -> None:
    with OpenAI(base_url=llama_server, temperature=0, max_tokens=5, logprobs=1) as llm:
        chunks = chunks_of(llm, flavour, PROMPTS[0])
    total = sum(chunks[1:], chunks[0])
    assert total.generation_info is not None
    assert "".join(total.generation_info["logprobs"]["tokens"]) == total.text


def test_a_prompt_too_long_for_the_context(llama_server: str, flavour: str) -> None:
    with OpenAI(base_url=llama_server, max_tokens=8) as llm:
        with pytest.raises(ContextLengthError) as info:
            invoke_of(llm, flavour, "word " * 700)
        assert info.value.n_ctx == 512  # type: ignore[attr-defined]
        # streaming, this server answers 200 and then ends the body without a frame
        with pytest.raises(ProtocolError, match="before \\[DONE\\]"):
            collect(stream_of(llm, flavour, "word " * 700))


def test_a_stream_stopped_early_leaves_the_server_serving(llama_server: str, flavour: str) -> None:
    with OpenAI(base_url=llama_server, temperature=0, max_tokens=200) as llm:
        assert take(stream_of(llm, flavour, PROMPTS[1]), 1)[0]
        assert invoke_of(llm, flavour, PROMPTS[0], max_tokens=3)


SYNC_PROGRAM = f"""
from lmstream import OpenAI

llm = OpenAI(model="gpt-3.5-turbo-instruct", temperature=0, max_tokens=512)
for chunk in llm.stream({SPARKLING!r}):
    print(chunk, end="|", flush=True)
"""

ASYNC_PROGRAM = f"""
import asyncio

from lmstream import OpenAI

llm = OpenAI(model="gpt-3.5-turbo-instruct", temperature=0, max_tokens=512)


async def main():
    async for chunk in llm.astream({SPARKLING!r}):
        print(chunk, end="|", flush=True)


asyncio.run(main())
"""


@pytest.mark.parametrize("program", [SYNC_PROGRAM, ASYNC_PROGRAM], ids=["sync", "async"])
def test_the_documented_program_runs_against_the_server(
    llama_server: str, llama_env: dict[str, str], tmp_path: Path, program: str
) -> None:
    path = tmp_path / "sparkling.py"
    path.write_text(textwrap.dedent(program))
    done = subprocess.run(
        [sys.executable, "-W", "error", str(path)], env=llama_env, capture_output=True,
        timeout=100, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    text, _, tokens = _server_answer(llama_server, SPARKLING, 512)
    printed = done.stdout.decode()
    assert printed.endswith("|")
    assert printed.replace("|", "") == text
    assert printed.count("|") == max(1, tokens)  # an empty answer still prints one chunk
