"""The providers the reliability suite runs against, each with a token counter on the
model's side of any HTTP hop."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from lmstream import FakeLLM


class Subject:
    """A provider under test and how to read its model's progress."""

    def __init__(
        self,
        llm: Any,
        produced: Callable[[], int],
        *,
        limit: int = 400,
        in_flight: int = 0,
        soak: int = 1000,
        settled: Callable[[], int] | None = None,
        open_connections: Callable[[], int] = lambda: 0,
        pool_connections: int = 0,
    ) -> None:
        self.llm = llm
        self.produced = produced
        self.prompt = "Write a long story about the sea."
        self.limit = limit
        self.in_flight = in_flight
        self.soak = soak
        self._settled = settled
        self.open_connections = open_connections
        self.pool_connections = pool_connections

    def settled(self) -> int:
        """The counter once the model side has seen the stop."""
        return self._settled() if self._settled is not None else self.produced()


@contextmanager
def fake() -> Iterator[Subject]:
    llm = FakeLLM(["x" * 1000], delay=0.001)
    yield Subject(llm, lambda: llm.tokens_produced)


@contextmanager
def llamacpp() -> Iterator[Subject]:
    from lmstream.providers.llamacpp import LlamaCpp

    llm = LlamaCpp(temperature=0, seed=7)
    yield Subject(llm, lambda: llm.tokens_generated)


PROVIDERS: dict[str, Callable[[], Any]] = {"fake": fake, "llamacpp": llamacpp}


def established_to(port: int) -> int:
    """TCP connections in ESTABLISHED state whose local port is ``port`` (server side)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as fh:
                rows = fh.readlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01":
                count += 1
    return count


@contextmanager
def _through_server(make_client: Callable[[str], Any]) -> Iterator[Subject]:
    from helpers import Outcomes
    from server_runner import running  # the lmstream server on loopback, in a thread

    ends = Outcomes()
    far = FakeLLM(["x" * 2000], delay=0.002, callbacks=[ends])
    with running({"m": far}) as server:
        port = int(server.url.rsplit(":", 1)[1])
        client = make_client(server.url)

        def settled() -> int:
            from helpers import wait_until

            wait_until(lambda: len(ends.outcomes) >= len(ends.starts), timeout=10)
            return far.tokens_produced

        yield Subject(
            client, lambda: far.tokens_produced, limit=2000, in_flight=4, soak=1000,
            settled=settled, open_connections=lambda: established_to(port), pool_connections=16,
        )  # fmt: skip


@contextmanager
def openai() -> Iterator[Subject]:
    from lmstream.providers.openai import OpenAI

    with _through_server(lambda url: OpenAI("m", base_url=url + "/v1", api_key="x")) as s:
        yield s


@contextmanager
def remote() -> Iterator[Subject]:
    from lmstream.providers.remote import RemoteLLM

    with _through_server(RemoteLLM) as s:
        yield s


PROVIDERS.update({"openai": openai, "remote": remote})
