"""The OpenAI-compatible endpoints, driven by the official ``openai`` SDK and by raw HTTP."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import openai
import pytest
from helpers import is_sync

from lmstream import FakeLLM


def client(url: str, flavour: str, key: str = "unused") -> Any:
    cls = openai.OpenAI if is_sync(flavour) else openai.AsyncOpenAI
    return cls(base_url=f"{url}/v1", api_key=key, max_retries=0)


def complete(url: str, flavour: str, **kwargs: Any) -> Any:
    sdk = client(url, flavour)
    if is_sync(flavour):
        with sdk:
            return sdk.completions.create(**kwargs)

    async def run() -> Any:
        async with sdk:
            return await sdk.completions.create(**kwargs)

    return asyncio.run(run())


def stream(url: str, flavour: str, **kwargs: Any) -> list[Any]:
    sdk = client(url, flavour)
    if is_sync(flavour):
        with sdk:
            return list(sdk.completions.create(stream=True, **kwargs))

    async def run() -> list[Any]:
        async with sdk:
            return [c async for c in await sdk.completions.create(stream=True, **kwargs)]

    return asyncio.run(run())


def test_non_streaming_completion(serve: Any, flavour: str) -> None:
    with serve({"smol": FakeLLM(["Sparkling water"])}) as server:
        result = complete(server.url, flavour, model="smol", prompt="hi there", max_tokens=64)
    assert result.choices[0].text == "Sparkling water"
    assert result.choices[0].finish_reason == "stop"
    assert result.model == "smol"
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (8, 15)


def test_streaming_completion_with_usage(serve: Any, flavour: str) -> None:
    with serve({"smol": FakeLLM(["Sparkling water"])}) as server:
        chunks = stream(
            server.url, flavour, model="smol", prompt="hi", max_tokens=64,
            stream_options={"include_usage": True},
        )  # fmt: skip
    texts = [c.choices[0].text for c in chunks if c.choices]
    assert "".join(texts) == "Sparkling water"
    assert len([t for t in texts if t]) == 15  # token by token
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop" and set(finishes[:-1]) == {None}
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 15


def test_a_hard_coded_model_name_is_answered_by_the_only_model(serve: Any, flavour: str) -> None:
    with serve({"smol": FakeLLM(["ok"])}) as server:
        result = complete(server.url, flavour, model="gpt-3.5-turbo-instruct", prompt="p")
    assert result.choices[0].text == "ok"
    assert result.model == "smol"  # the answer tells the truth


def test_aliases_and_several_models(serve: Any, flavour: str) -> None:
    models = {"a": FakeLLM(["from a"]), "b": FakeLLM(["from b"])}
    with serve(models, aliases={"alias-of-b": "b"}) as server:
        assert (
            complete(server.url, flavour, model="alias-of-b", prompt="p").choices[0].text
            == "from b"
        )
        assert complete(server.url, flavour, model="a", prompt="p").choices[0].text == "from a"
        with pytest.raises(openai.NotFoundError) as info:
            complete(server.url, flavour, model="c", prompt="p")
        listed = httpx.get(f"{server.url}/v1/models").json()
    assert info.value.body["code"] == "model_not_found"
    assert {m["id"] for m in listed["data"]} == {"a", "b", "alias-of-b"}


def test_prompt_lists_give_one_choice_each(serve: Any, flavour: str) -> None:
    with serve({"m": FakeLLM(["x", "yy"])}) as server:
        result = complete(server.url, flavour, model="m", prompt=["p1", "p2"])
    assert [(c.index, c.text) for c in result.choices] == [(0, "x"), (1, "yy")]
    assert result.usage.completion_tokens == 3


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"n": 2}, "n"),
        ({"echo": True}, "echo"),
        ({"best_of": 3}, "best_of"),
        ({"logprobs": 2}, "logprobs"),
        ({"max_tokens": 100_000}, "max_tokens"),
        ({"temperature": 5}, "temperature"),
        ({"max_tokens": -1}, "max_tokens"),
        ({"prompt": []}, "prompt"),
    ],
)
def test_unsupported_or_invalid_options_are_clear_400s(
    serve: Any, flavour: str, kwargs: dict[str, Any], param: str
) -> None:
    with serve({"m": FakeLLM(["x"])}) as server, pytest.raises(openai.BadRequestError) as info:
        complete(server.url, flavour, **{"model": "m", "prompt": "p", **kwargs})
    assert info.value.status_code == 400
    assert info.value.body["type"] == "invalid_request_error"
    assert param in (info.value.body["param"] or "") or param in info.value.body["message"]


def test_a_failure_mid_stream_reaches_the_client_as_an_error(serve: Any, flavour: str) -> None:
    failing = pytest.raises(openai.APIError, match="failed after 3 tokens")
    with serve({"m": FakeLLM(["abcdef"], error_after=3)}) as server, failing:
        stream(server.url, flavour, model="m", prompt="p", max_tokens=50)


def test_sse_framing_on_the_wire(serve: Any) -> None:
    with serve({"m": FakeLLM(["ab"])}) as server:
        body = {"model": "m", "prompt": "p", "stream": True}
        with httpx.stream("POST", f"{server.url}/v1/completions", json=body) as response:
            raw = b"".join(response.iter_raw())
            content_type = response.headers["content-type"]
    assert content_type.startswith("text/event-stream")
    frames = raw.split(b"\n\n")
    assert frames[-1] == b"" and frames[-2] == b"data: [DONE]"
    assert all(f.startswith(b"data: {") for f in frames[:-2])
    assert len(frames) == 2 + 2  # two tokens (the last with finish_reason), [DONE], the end
