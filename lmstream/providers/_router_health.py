"""The router's health checks: probes that spend no tokens, in one background thread.

Every ``interval`` seconds each backend gets a ``GET`` of its probe path (``/v1/models``
by default: vLLM, llama.cpp's server, SGLang and ``lmstream serve`` all answer it;
``/health`` works for most too). A failed probe counts as a failure towards ejection;
a successful one admits an ejected backend again. With ``metrics``, the backend's
Prometheus ``/metrics`` is read too, and the requests waiting in its queue (vLLM's
``vllm:num_requests_waiting``) add to its load when the router chooses.

The thread starts with the router's first request and ends with ``close()``; it is a
daemon, so a router never closed does not keep a program alive.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

import httpx

from lmstream.providers._router_pool import Backend, Pool

__all__ = ["WAITING_METRICS", "Prober", "root_of", "waiting_in"]

WAITING_METRICS = ("vllm:num_requests_waiting", "sglang:num_queue_reqs")
"""Gauges, summed over their labels, that count the requests queued in a backend."""


def root_of(base_url: str) -> str:
    """The server's root for a ``.../v1`` base URL (probes and ``/metrics`` live there)."""
    return base_url[: -len("/v1")] if base_url.endswith("/v1") else base_url


def waiting_in(text: str, names: Iterable[str] = WAITING_METRICS) -> float | None:
    """Requests waiting, from a Prometheus text exposition (``None``: no such gauge)."""
    from prometheus_client.parser import text_string_to_metric_families

    wanted, total, seen = set(names), 0.0, False
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in wanted:
                total, seen = total + sample.value, True
    return total if seen else None


class Prober:
    """Probes every backend of ``pool`` every ``interval`` seconds, in a thread."""

    def __init__(
        self,
        pool: Pool,
        *,
        interval: float,
        path: str = "/v1/models",
        metrics: bool = False,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.pool, self.interval, self.path, self.metrics = pool, interval, path, metrics
        self.headers = headers or {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start the thread unless it runs (cheap to call on every request)."""
        if self._thread is not None or self.interval <= 0:
            return
        with self._lock:
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(
                    target=self._run, name="lmstream-router-probes", daemon=True
                )
                self._thread.start()

    def stop(self) -> None:
        """Stop the thread and wait for it (at most one probe's time limit)."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    def _run(self) -> None:
        timeout = httpx.Timeout(min(self.interval, 5.0))
        with httpx.Client(timeout=timeout, headers=self.headers) as client:
            while not self._stop.wait(self.interval):
                self.probe_all(client)

    def probe_all(self, client: httpx.Client) -> None:
        """Probe each backend once and report to the pool."""
        for backend in list(self.pool.backends):
            if self._stop.is_set():
                return
            self.pool.probed(backend, *self.probe(client, backend))

    def probe(self, client: httpx.Client, backend: Backend) -> tuple[bool, float | None]:
        """Whether ``backend`` answers its probe, and its waiting requests when read."""
        root = root_of(backend.url)
        try:
            ok = client.get(root + self.path).status_code < 400
        except httpx.HTTPError:
            return False, None
        if not (ok and self.metrics):
            return ok, None
        try:
            answer = client.get(root + "/metrics")
            return ok, waiting_in(answer.text) if answer.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            return ok, None
