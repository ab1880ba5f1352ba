"""Parameters of the OpenAI provider: validation, per-call overrides and the request body.
Pure: the provider builds one ``Call`` per request from these."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from lmstream.errors import InvalidInputError
from lmstream.providers._http import Call, RetryPolicy, TimeLimits

__all__ = ["BODY", "CLIENT", "build_call", "check", "check_base_url", "limits_of", "merged"]


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


# name -> (test, what a valid value is, whether None means "not set")
_RULES: dict[str, tuple[Callable[[Any], bool], str, bool]] = {
    "model": (lambda v: isinstance(v, str) and bool(v), "a non-empty str", False),
    "temperature": (lambda v: _num(v) and v >= 0, "a number >= 0", True),
    "top_p": (lambda v: _num(v) and 0 <= v <= 1, "a number in [0, 1]", True),
    "max_tokens": (lambda v: _int(v) and v >= 1, "an int >= 1", True),
    "seed": (_int, "an int", True),
    "n": (lambda v: v == 1 and _int(v), "1 (one completion per call: use batch for more)", False),
    "logprobs": (lambda v: _int(v) and v >= 0, "an int >= 0", True),
    "presence_penalty": (_num, "a number", True),
    "frequency_penalty": (_num, "a number", True),
    "logit_bias": (lambda v: isinstance(v, dict), "a dict", True),
    "user": (lambda v: isinstance(v, str), "a str", True),
    "suffix": (lambda v: isinstance(v, str), "a str", True),
    "echo": (lambda v: isinstance(v, bool), "a bool", True),
    "best_of": (lambda v: v == 1 and _int(v), "1 (a stream carries one candidate)", True),
    "extra_body": (lambda v: isinstance(v, dict), "a dict of extra JSON fields", True),
    "stream_usage": (lambda v: isinstance(v, bool), "a bool", False),
    "timeout": (lambda v: _num(v) and v > 0, "a number of seconds > 0", True),
    "connect_timeout": (lambda v: _num(v) and v > 0, "a number of seconds > 0", True),
    "first_token_timeout": (lambda v: _num(v) and v > 0, "a number of seconds > 0", True),
    "idle_timeout": (lambda v: _num(v) and v > 0, "a number of seconds > 0", True),
    "max_retries": (lambda v: _int(v) and v >= 0, "an int >= 0", False),
    "retry_backoff": (lambda v: _num(v) and v >= 0, "a number of seconds >= 0", False),
}
BODY = (
    "model", "temperature", "top_p", "max_tokens", "seed", "logprobs", "presence_penalty",
    "frequency_penalty", "logit_bias", "user", "suffix", "echo", "best_of",
)  # fmt: skip
"""Settings sent in the request body when set."""
CLIENT = ("timeout", "connect_timeout", "first_token_timeout", "idle_timeout", "max_retries",
          "retry_backoff")  # fmt: skip
"""Settings that shape the call on our side (time limits and retries)."""


def check(name: str, value: Any) -> None:
    """Raise ``InvalidInputError`` unless ``value`` is valid for the setting ``name``."""
    rule = _RULES.get(name)
    if rule is None:
        raise InvalidInputError(
            f"OpenAI got an unknown parameter {name!r}; send server-specific fields "
            f"in extra_body (known: {sorted(_RULES)})"
        )
    test, valid, optional = rule
    if value is None and optional:
        return
    if not test(value):
        raise InvalidInputError(f"OpenAI: {name} must be {valid}, not {value!r}")


def check_base_url(url: str) -> str:
    """``url`` without its trailing slash, if it is an http(s) URL."""
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise InvalidInputError(f"base_url must be an http:// or https:// URL, not {url!r}")
    return url.rstrip("/")


def merged(settings: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The instance's settings with a call's keyword arguments applied (validated)."""
    for name, value in overrides.items():
        check(name, value)
    return {**settings, **overrides}


def limits_of(s: Mapping[str, Any]) -> TimeLimits:
    return TimeLimits(
        s["connect_timeout"], s["first_token_timeout"], s["idle_timeout"], s["timeout"]
    )


def build_call(
    url: str,
    headers: dict[str, str],
    settings: Mapping[str, Any],
    prompt: str,
    stop: list[str] | None,
    stream: bool,
) -> Call:
    """The ``Call`` for one completion request."""
    body: dict[str, Any] = {k: settings[k] for k in BODY if settings.get(k) is not None}
    body["prompt"] = prompt
    body["stream"] = stream
    if stop:
        body["stop"] = stop
    if stream and settings["stream_usage"]:
        body["stream_options"] = {"include_usage": True}
    if settings.get("extra_body"):
        body.update(settings["extra_body"])
    policy = RetryPolicy(settings["max_retries"], settings["retry_backoff"])
    accept = "text/event-stream" if stream else "application/json"
    return Call(url, body, {**headers, "Accept": accept}, limits_of(settings), policy)
