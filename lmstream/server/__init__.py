"""``lmstream serve``: OpenAI-compatible and runnable endpoints over any lmstream model.

Needs the server extra: ``pip install 'lmstream[server]'``.
"""

try:
    import fastapi  # noqa: F401
    import uvicorn  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "the server needs FastAPI and uvicorn: pip install 'lmstream[server]'"
    ) from exc

from lmstream.server.app import create_app
from lmstream.server.connections import uvicorn_options
from lmstream.server.state import ServerSettings

__all__ = ["ServerSettings", "create_app", "uvicorn_options"]
