"""Chat completions replies for the scripted server (``scripted.py``): streamed deltas
(text, reasoning, tool-call fragments), usage at the end or on every chunk, and whole
answers.

::

    server.script(chat_stream(["Hel", "lo"], usage=(5, 2)))
    server.script(chat_stream([{"tool_calls": [tool_delta(0, "get", '{"a"', id="c1")]}]))

``chat_echo`` answers with the last message's words, one delta each (``max_tokens`` at
most); ``python tests/servers/scripted_chat.py [PORT]`` serves it in a process of its own
and prints its base URL (the benchmarks use it).
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if __name__ == "__main__":  # run as a script: find the servers package
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from servers.scripted import Reply, ScriptedServer, Send, Step, sse

__all__ = ["chat_completion", "chat_echo", "chat_frames", "chat_stream", "tool_delta"]

Delta = str | dict[str, Any]


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion}  # fmt: skip


def _chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
    choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
    return {"id": "chatcmpl-scripted", "object": "chat.completion.chunk", "created": 0,
            "model": "scripted-chat", "choices": [choice], **extra}  # fmt: skip


def tool_delta(
    index: int | None, name: str | None = None, arguments: str = "", *, id: str | None = None
) -> dict[str, Any]:
    """One tool-call fragment (``index`` ``None``: the field is left out)."""
    function: dict[str, Any] = {"arguments": arguments}
    if name is not None:
        function["name"] = name
    out: dict[str, Any] = {"function": function}
    if id is not None:
        out |= {"id": id, "type": "function"}
    if index is not None:
        out["index"] = index
    return out


def chat_frames(
    deltas: Sequence[Delta],
    *,
    finish_reason: str | None = "stop",
    usage: tuple[int, int] | None = (3, 2),
    usage_every: bool = False,
    done: bool = True,
    usage_details: dict[str, Any] | None = None,
) -> list[bytes]:
    """A frame per delta (a str is ``{"content": str}``), one with ``finish_reason``, a
    usage frame with empty choices (or, ``usage_every``, running totals on every frame
    instead, the last being ``usage``) and ``[DONE]``."""
    payloads = [_chunk({"role": "assistant", "content": d} if isinstance(d, str) else d)
                for d in deltas]  # fmt: skip
    if finish_reason is not None:
        payloads.append(_chunk({}, finish_reason))
    if usage is not None and usage_every:
        for i, payload in enumerate(payloads):
            payload["usage"] = _usage(usage[0], min(i, usage[1]))
        payloads[-1]["usage"] = _usage(*usage)
    elif usage is not None:
        counts = {**_usage(*usage), **(usage_details or {})}
        payloads.append({**_chunk({}), "choices": [], "usage": counts})
    return [sse(p, done=False) for p in payloads] + ([b"data: [DONE]\n\n"] if done else [])


def chat_stream(
    deltas: Sequence[Delta],
    *,
    delay: float = 0.0,
    first_delay: float = 0.0,
    split: int | None = None,
    then: Sequence[Step] = (),
    **options: Any,
) -> Reply:
    """A streamed chat completion (see ``chat_frames``; the other arguments as in
    ``scripted.stream``)."""
    parts = chat_frames(deltas, **options)
    if split:
        data = b"".join(parts)
        parts = [data[i : i + split] for i in range(0, len(data), split)]
    steps: list[Step] = [
        Send(p, first_delay if i == 0 and first_delay else delay) for i, p in enumerate(parts)
    ]
    return Reply(headers={"content-type": "text/event-stream"}, steps=[*steps, *then])


def chat_completion(
    message: dict[str, Any] | str,
    *,
    finish_reason: str = "stop",
    usage: tuple[int, int] | None = (3, 2),
    usage_details: dict[str, Any] | None = None,
) -> Reply:
    """A whole (non-streamed) chat completion (``usage_details``: more fields of its usage)."""
    if isinstance(message, str):
        message = {"role": "assistant", "content": message}
    choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}
    body: dict[str, Any] = {"id": "chatcmpl-scripted", "object": "chat.completion",
                            "created": 0, "model": "scripted-chat",
                            "choices": [choice]}  # fmt: skip
    if usage is not None:
        body["usage"] = {**_usage(*usage), **(usage_details or {})}
    return Reply(200, {"content-type": "application/json"}, [Send(json.dumps(body).encode())])


def chat_echo(body: Any) -> Reply:
    """The last message's words back, one delta each (``max_tokens`` of them at most)."""
    messages = body.get("messages") if isinstance(body, dict) else None
    last = str(messages[-1].get("content", "")) if messages else ""
    words = [w + " " for w in last.split(" ")] if last else []
    limit, reason = body.get("max_tokens") if isinstance(body, dict) else None, "stop"
    if isinstance(limit, int) and len(words) > limit:
        words, reason = words[:limit], "length"
    usage = (len(last.split()), len(words))
    if isinstance(body, dict) and body.get("stream"):
        return chat_stream(words, finish_reason=reason, usage=usage)
    return chat_completion("".join(words), finish_reason=reason, usage=usage)


def main() -> None:
    """Serve ``chat_echo`` until killed and print the base URL once it listens."""
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    with ScriptedServer(chat_echo, port=port) as server:
        print(server.url, flush=True)
        threading.Event().wait()


if __name__ == "__main__":
    main()
