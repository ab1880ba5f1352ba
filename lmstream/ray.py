"""Ray Serve: ``lmstream serve``'s app as a deployment with N replicas, on a Ray cluster.

::

    from ray import serve
    from lmstream.ray import application

    serve.run(application("llamacpp", replicas=4), route_prefix="/")

Each replica builds its own models and serves the same OpenAI-compatible and runnable
routes as ``lmstream serve`` (auth, limits, disconnect-cancel included); Serve's proxy
spreads requests over the replicas and restarts one that dies. Ray places the replicas;
lmstream schedules nothing itself (``ray_actor_options`` says what a replica needs, such
as ``{"num_gpus": 1}`` for an engine that uses one).

Needs the ``ray`` extra: ``pip install 'lmstream[ray]'``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

try:
    from ray import serve
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("lmstream.ray needs Ray Serve: pip install 'lmstream[ray]'") from exc

from lmstream.errors import InvalidInputError
from lmstream.llm import BaseLLM
from lmstream.server import ServerSettings, create_app

__all__ = ["DEPLOYMENT", "Models", "application", "run"]

DEPLOYMENT = "lmstream"
"""The name of the deployment (and of the application ``run`` starts)."""

Models = Callable[[], "tuple[Mapping[str, BaseLLM], Mapping[str, str]]"]
"""Builds, inside a replica, the served models (name -> LLM) and their aliases."""


class _Load:
    """A picklable ``Models`` for one model id (what Serve sends to each replica)."""

    def __init__(self, model: str, name: str | None, options: dict[str, Any]) -> None:
        self.model, self.name, self.options = model, name or model, options

    def __call__(self) -> tuple[dict[str, BaseLLM], dict[str, str]]:
        from lmstream.registry import load_llm

        return {self.name: load_llm(self.model, **self.options)}, {}


def application(
    model: str | Models = "llamacpp",
    *,
    replicas: int = 1,
    settings: ServerSettings | None = None,
    name: str | None = None,
    ray_actor_options: dict[str, Any] | None = None,
    **options: Any,
) -> Any:
    """A Serve application: ``replicas`` copies of the server for ``model`` (a model id,
    loaded with ``options``, or a ``Models`` callable), under ``name`` (default: its id)."""
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 1:
        raise InvalidInputError(f"replicas must be an int >= 1, not {replicas!r}")
    build = _Load(model, name, options) if isinstance(model, str) else model
    chosen = settings or ServerSettings()

    def asgi_app() -> Any:  # run in each replica when it starts
        models, aliases = build()
        return create_app(models, chosen, aliases)

    deployment: Any = serve.deployment(
        serve.ingress(asgi_app)(),
        name=DEPLOYMENT,
        num_replicas=replicas,
        ray_actor_options=ray_actor_options or {"num_cpus": 0},
        max_ongoing_requests=chosen.max_concurrency + chosen.max_waiting,
    )
    return deployment.bind()


def run(app: Any, *, host: str = "127.0.0.1", port: int = 8000, blocking: bool = True) -> None:
    """Start Serve's HTTP proxy on ``host:port`` and run ``app`` at ``/``; ``blocking``:
    until Ctrl-C. Without a connected Ray, connects to the cluster ``RAY_ADDRESS`` names,
    else starts a local one."""
    import ray

    if not ray.is_initialized():
        ray.init(address=os.environ.get("RAY_ADDRESS"), include_dashboard=False)
    serve.start(http_options={"host": host, "port": port})
    serve.run(app, name=DEPLOYMENT, route_prefix="/", blocking=blocking)
