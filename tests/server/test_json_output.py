"""``response_format`` through ``lmstream serve``: JSON from the embedded model on both
endpoints, and a clear 400 from a model that cannot constrain its output."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import openai
import pytest
from helpers import is_sync
from pydantic import BaseModel, Field

from lmstream import FakeLLM
from lmstream.providers.llamacpp import LlamaCpp


def sse(response: httpx.Response) -> list[tuple[str, Any]]:
    frames = []
    for block in response.text.split("\n\n"):
        if block.strip():
            fields = dict(line.split(": ", 1) for line in block.splitlines())
            frames.append((fields.get("event", "message"), json.loads(fields["data"])))
    return frames


class City(BaseModel):
    name: str = Field(max_length=20)
    country: str = Field(max_length=20)
    population_millions: int = Field(ge=0, le=40)


SCHEMA_FORMAT = {
    "type": "json_schema",
    "json_schema": {"name": "city", "schema": City.model_json_schema(), "strict": True},
}


@pytest.fixture(scope="module")
def local() -> LlamaCpp:
    return LlamaCpp(temperature=0.8)


def _completion_texts(url: str, flavour: str, **body: Any) -> list[str]:
    args = {"model": "m", "prompt": "A city?", "max_tokens": 80, "stream": True, **body}
    fmt = {"response_format": args.pop("response_format")}
    if is_sync(flavour):
        with openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0) as sdk:
            return [c.choices[0].text for c in sdk.completions.create(**args, extra_body=fmt)]

    async def run() -> list[str]:
        async with openai.AsyncOpenAI(base_url=url + "/v1", api_key="x", max_retries=0) as sdk:
            stream = await sdk.completions.create(**args, extra_body=fmt)
            return [c.choices[0].text async for c in stream]

    return asyncio.run(run())


def test_completions_follow_a_json_schema(serve: Any, local: LlamaCpp, flavour: str) -> None:
    with serve({"m": local}) as server:
        for seed in (1, 2) if is_sync(flavour) else (3, 4):
            texts = _completion_texts(server.url, flavour, response_format=SCHEMA_FORMAT, seed=seed)
            assert len(texts) > 3  # streamed, not buffered
            City.model_validate_json("".join(texts))


def test_completions_json_object(serve: Any, local: LlamaCpp, flavour: str) -> None:
    with serve({"m": local}) as server:
        texts = _completion_texts(
            server.url, flavour, response_format={"type": "json_object"}, seed=0
        )
    assert isinstance(json.loads("".join(texts)), dict)


def test_runnable_endpoints_take_response_format(serve: Any, local: LlamaCpp) -> None:
    kwargs = {"response_format": SCHEMA_FORMAT, "seed": 5, "max_tokens": 80}
    with serve({"m": local}) as server:
        answer = httpx.post(f"{server.url}/invoke", json={"input": "A city?", "kwargs": kwargs})
        frames = sse(
            httpx.post(f"{server.url}/stream", json={"input": "A city?", "kwargs": kwargs})
        )
    City.model_validate_json(answer.json()["output"])
    streamed = "".join(f[1]["text"] for f in frames if f[0] == "data")
    assert streamed == answer.json()["output"]  # same seed, same JSON


def test_a_bad_response_format_answers_400(serve: Any, local: LlamaCpp) -> None:
    with serve({"m": local}) as server:
        body = {"model": "m", "prompt": "p", "response_format": {"type": "xml"}}
        completions = httpx.post(f"{server.url}/v1/completions", json=body)
        runnable = httpx.post(
            f"{server.url}/stream", json={"input": "p", "kwargs": {"response_format": "json"}}
        )
    assert completions.status_code == 400, completions.text
    assert runnable.status_code == 400, runnable.text
    assert "response_format" in runnable.json()["error"]["message"]


def test_a_model_without_it_answers_400(serve: Any) -> None:
    with serve({"m": FakeLLM(["{}"])}) as server:
        body = {"model": "m", "prompt": "p", "response_format": {"type": "json_object"}}
        completions = httpx.post(f"{server.url}/v1/completions", json=body)
        runnable = httpx.post(
            f"{server.url}/stream",
            json={"input": "p", "kwargs": {"response_format": {"type": "json_object"}}},
        )
    assert completions.status_code == 400, completions.text
    assert completions.json()["error"]["param"] == "response_format"
    assert runnable.status_code == 400, runnable.text
    assert runnable.json()["error"]["param"] == "kwargs.response_format"
