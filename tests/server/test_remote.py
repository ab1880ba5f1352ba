"""RemoteLLM: the whole Runnable interface against a real server, sync and async."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import (
    Outcomes,
    chunks_of,
    collect,
    events_of,
    invoke_of,
    stream_of,
    take,
    wait_until,
)

from lmstream import (
    AuthenticationError,
    FakeLLM,
    InvalidInputError,
    PromptTemplate,
    ProviderError,
    RemoteLLM,
    StrOutputParser,
    load_llm,
)


def test_invoke_and_stream(serve: Any, flavour: str) -> None:
    with serve({"m": FakeLLM(["hello there"], chunking="word")}) as server:
        remote = RemoteLLM(server.url)
        assert invoke_of(remote, flavour, "p") == "hello there"
        assert collect(stream_of(remote, flavour, "p")) == ["hello ", "there"]
        last = chunks_of(remote, flavour, "p")[-1]
    assert last.finish_reason == "stop"
    assert last.usage is not None and last.usage.completion_tokens == 2
    assert not last.usage.estimated  # the server's own count came through


def test_generation_parameters_and_stop_reach_the_model(serve: Any, flavour: str) -> None:
    with serve({"m": FakeLLM(["abc\ndef"])}) as server:
        remote = RemoteLLM(server.url)
        assert invoke_of(remote, flavour, "p", max_tokens=2) == "ab"
        assert "".join(collect(stream_of(remote, flavour, "p", stop=["\n"]))) == "abc"
        with pytest.raises(InvalidInputError):
            invoke_of(remote, flavour, "p", n_threads=3)


def test_a_remote_model_composes_like_a_local_one(serve: Any, flavour: str) -> None:
    with serve({"m": FakeLLM(["hey"])}) as server:
        chain = PromptTemplate.from_template("Q: {q}") | RemoteLLM(server.url) | StrOutputParser()
        assert collect(stream_of(chain, flavour, {"q": "x"})) == ["h", "e", "y"]
        events = events_of(chain, {"q": "x"})
        batch = RemoteLLM(server.url).batch(["a", "b", "c"], {"max_concurrency": 2})
    kinds = [e["event"] for e in events]
    assert kinds.count("on_llm_stream") == 3 and "on_llm_end" in kinds
    assert batch == ["hey"] * 3


def test_typed_errors_come_back_as_themselves(serve: Any, flavour: str) -> None:
    with serve({"m": FakeLLM(["abcdef"], error_after=2)}) as server:
        remote = RemoteLLM(server.url, max_retries=0)
        with pytest.raises(ProviderError, match="failed after 2 tokens") as streamed:
            collect(stream_of(remote, flavour, "p"))
        with pytest.raises(ProviderError) as invoked:
            invoke_of(remote, flavour, "p")
    assert streamed.value.partial_text == "ab"
    assert invoked.value.partial_text == "ab"


def test_keys(serve: Any, flavour: str) -> None:
    with serve({"m": FakeLLM(["ok"])}, api_keys=["sk-remote"]) as server:
        assert invoke_of(RemoteLLM(server.url, api_key="sk-remote"), flavour, "p") == "ok"
        with pytest.raises(AuthenticationError):
            invoke_of(RemoteLLM(server.url, api_key="wrong"), flavour, "p")


def test_closing_a_remote_stream_stops_the_model_over_there(serve: Any, flavour: str) -> None:
    cancels = Outcomes()
    far = FakeLLM(["z" * 300], delay=0.01, callbacks=[cancels])
    with serve({"m": far}) as server:
        assert take(stream_of(RemoteLLM(server.url), flavour, "p"), 2) == ["z", "z"]
        assert wait_until(lambda: cancels.outcomes.count("cancelled") == 1)
        stopped = far.tokens_produced
        assert not wait_until(lambda: far.tokens_produced > stopped, timeout=0.3)
    assert stopped < 300


def test_remote_ids_load_a_remote_model(serve: Any) -> None:
    with serve({"m": FakeLLM(["via id"])}) as server:
        assert load_llm(f"remote:{server.url}").invoke("p") == "via id"


def test_generation_defaults_set_on_the_instance(serve: Any, flavour: str) -> None:
    with serve({"m": FakeLLM(["abcdef"])}) as server:
        remote = RemoteLLM(server.url, max_tokens=3, stop=["c"])
        assert invoke_of(remote, flavour, "p") == "ab"  # the instance's stop, cut here
        assert invoke_of(remote, flavour, "p", max_tokens=5, stop=["z"]) == "abcde"


def test_a_remote_model_dropped_unclosed_is_freed_and_closes_its_sockets(
    serve: Any, flavour: str
) -> None:
    import gc
    import warnings
    import weakref

    with serve({"m": FakeLLM(["hey"])}) as server:
        remote = RemoteLLM(server.url)
        assert invoke_of(remote, flavour, "p") == "hey"
        assert remote.invoke("p") == "hey"  # the sync client too, whatever the flavour
        freed = weakref.ref(remote)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            del remote
            gc.collect()
    assert freed() is None  # nothing in lmstream keeps a model alive
    assert [str(w.message) for w in caught if w.category is ResourceWarning] == []
