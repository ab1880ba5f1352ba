"""The embedded model inside a real LangChain chain, token by token."""

from __future__ import annotations

from typing import Any

from helpers import collect, stream_of
from langchain_core.output_parsers import StrOutputParser as LangChainParser
from langchain_core.prompts import PromptTemplate as LangChainPrompt

from lmstream.langchain import to_langchain
from lmstream.providers.llamacpp import LlamaCpp


def test_the_embedded_model_streams_token_by_token_inside_langchain(
    llm: LlamaCpp, prompt: str, flavour: str
) -> None:
    chain = LangChainPrompt.from_template("{q}") | to_langchain(llm) | LangChainParser()
    chunks = collect(stream_of(chain, flavour, {"q": prompt}))
    assert len(chunks) > 3 and "".join(chunks) == llm.invoke(prompt)


def test_the_embedded_models_usage_reaches_langchain(llm: LlamaCpp, prompt: str) -> None:
    result = to_langchain(llm).generate([prompt])
    info: Any = result.generations[0][0].generation_info
    assert info["finish_reason"] == "length"
    assert info["usage"]["completion_tokens"] == 12 and info["usage"]["prompt_tokens"] > 0
