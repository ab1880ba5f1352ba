"""ChatOpenAI against the real ``llama_cpp.server`` serving the embedded SmolLM2 model:
real SSE from ``/v1/chat/completions``, streamed text equal to the server's own
non-streamed answer at temperature 0, with usage."""

from __future__ import annotations

import httpx
import pytest
from helpers import chunks_of, invoke_of, stream_of, take

from lmstream import ContextLengthError, HumanMessage, SystemMessage
from lmstream.messages import add_chunks
from lmstream.providers.openai_chat import ChatOpenAI

QUESTIONS = ["What is the capital of France?", "Name three colours."]
SYSTEM = "You are a helpful assistant. Answer in one sentence."


def _server_answer(url: str, question: str, max_tokens: int) -> tuple[str, str]:
    """The server's own non-streamed answer, asked for without lmstream."""
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}]
    body = {"messages": messages, "max_tokens": max_tokens, "temperature": 0}
    answer = httpx.post(f"{url}/chat/completions", json=body, timeout=120).json()
    choice = answer["choices"][0]
    return choice["message"]["content"], choice["finish_reason"]


@pytest.mark.parametrize("question", QUESTIONS)
def test_streamed_text_equals_the_servers_whole_answer(
    llama_server: str, flavour: str, question: str
) -> None:
    text, reason = _server_answer(llama_server, question, 24)
    messages = [SystemMessage(SYSTEM), HumanMessage(question)]
    with ChatOpenAI(base_url=llama_server, temperature=0, max_tokens=24) as chat:
        chunks = chunks_of(chat, flavour, messages)
        invoked = invoke_of(chat, flavour, messages)
    assert len([c for c in chunks if c.text]) > 1  # streamed, not one piece
    message = add_chunks(chunks)
    assert message.text == text == invoked.text
    assert message.response_metadata["finish_reason"] == reason
    usage = message.usage_metadata
    assert usage is not None and usage["output_tokens"] > 0 and usage["input_tokens"] > 0


def test_a_stream_stopped_early_leaves_the_server_serving(llama_server: str, flavour: str) -> None:
    with ChatOpenAI(base_url=llama_server, temperature=0, max_tokens=200) as chat:
        assert take(stream_of(chat, flavour, "Tell me a long story."), 1)
        assert invoke_of(chat, flavour, QUESTIONS[0], max_tokens=3).text


def test_a_conversation_too_long_for_the_context(llama_server: str, flavour: str) -> None:
    with ChatOpenAI(base_url=llama_server, max_tokens=8) as chat:
        with pytest.raises(ContextLengthError) as info:
            invoke_of(chat, flavour, "word " * 700)
        assert info.value.n_ctx == 512  # type: ignore[attr-defined]
