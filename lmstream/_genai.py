"""The OpenTelemetry GenAI semantic conventions for model runs, pure: attributes, names,
instruments and what a finished run records.

By default the names are those of the conventions' version 1.36 (the provider as
``gen_ai.system``, message content as span events); with
``OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental`` the latest ones
(``gen_ai.provider.name``, ``gen_ai.input.messages`` / ``gen_ai.output.messages``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from lmstream.chunks import LLMResult, Usage
from lmstream.message_input import ChatGeneration

if TYPE_CHECKING:
    from lmstream.runs import Run

__all__ = [
    "MODEL_RUNS",
    "answer",
    "error_attributes",
    "instruments",
    "record",
    "request_attributes",
    "response_attributes",
]

MODEL_RUNS = frozenset({"llm", "chat_model"})
_SECONDS = [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92]
_TOKENS = [4**i for i in range(14)]  # 1, 4, 16, ... 67108864
_PARAMS = {
    "max_tokens": "gen_ai.request.max_tokens",
    "temperature": "gen_ai.request.temperature",
    "top_p": "gen_ai.request.top_p",
    "top_k": "gen_ai.request.top_k",
    "seed": "gen_ai.request.seed",
    "frequency_penalty": "gen_ai.request.frequency_penalty",
    "presence_penalty": "gen_ai.request.presence_penalty",
}
_servers: dict[str, tuple[str | None, int | None]] = {}
_classes: dict[type, tuple[Any, Any]] = {}  # a model class -> its declared names
_Request = tuple[dict[str, Any], dict[str, Any], str]
# (model class, kind of run, latest conventions, model type, provider, model) -> (the
# parameters they were worked out for, the types of its numbers, request_attributes' answer)
_requests: dict[tuple[Any, ...], tuple[dict[str, Any], tuple[Any, ...], _Request]] = {}
_NONE: dict[str, Any] = {}


class Instruments:
    """The four histograms of the GenAI client metrics."""

    __slots__ = ("duration", "first_chunk", "per_chunk", "tokens")

    def __init__(self, meter: Any) -> None:
        def histogram(name: str, unit: str, description: str, buckets: list[Any]) -> Any:
            return meter.create_histogram(
                name, unit=unit, description=description,
                explicit_bucket_boundaries_advisory=buckets,
            )  # fmt: skip

        self.duration = histogram(
            "gen_ai.client.operation.duration", "s", "GenAI operation duration.", _SECONDS
        )
        self.tokens = histogram(
            "gen_ai.client.token.usage", "{token}", "Number of input and output tokens used.",
            _TOKENS,
        )  # fmt: skip
        self.first_chunk = histogram(
            "gen_ai.client.operation.time_to_first_chunk", "s",
            "Time to receive the first chunk of a streamed response.", _SECONDS,
        )  # fmt: skip
        self.per_chunk = histogram(
            "gen_ai.client.operation.time_per_output_chunk", "s",
            "Mean time between the chunks of a streamed response, one value per call.",
            _SECONDS,
        )  # fmt: skip


def instruments(meter: Any) -> Instruments:
    """The instruments, made with ``meter``."""
    return Instruments(meter)


def _server(url: Any) -> tuple[str | None, int | None]:
    if not isinstance(url, str) or not url:
        return None, None
    found = _servers.get(url)
    if found is None:
        parts = urlsplit(url)
        try:
            port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
        except ValueError:
            port = None
        found = _servers[url] = (parts.hostname, port)
    return found


def _declared(owner: Any) -> tuple[Any, Any]:
    """The operation and provider names a model's class declares, looked up once."""
    kind = type(owner)
    found = _classes.get(kind)
    if found is None:
        found = _classes[kind] = (
            getattr(kind, "gen_ai_operation", None),
            getattr(kind, "gen_ai_provider", None),
        )
    return found


def _find_names(run: Run) -> tuple[str, str]:
    """(operation, provider): the class's own, else from the run's kind and metadata."""
    operation, provider = _declared(run.owner)
    metadata = run.metadata
    if not isinstance(operation, str):
        chat = run.run_type == "chat_model" or metadata.get("ls_model_type") == "chat"
        operation = "chat" if chat else "text_completion"
    if not isinstance(provider, str):
        provider = metadata.get("ls_provider")
        if not isinstance(provider, str):
            name = type(run.owner).__name__.lower()
            provider = name[:-3] if name.endswith("llm") and len(name) > 3 else name
    return operation, provider


def request_attributes(run: Run, latest: bool) -> _Request:
    """(the attributes shared by the span and the metrics, the span's start attributes,
    the span's name), worked out once per model class, kind of run, names and parameters:
    a model called again as before gets the same ones, which nobody changes (a span and
    a metric copy what they are given)."""
    params: dict[str, Any] = run.extra.get("invocation_params") or _NONE
    get = run.metadata.get
    model = params.get("model") or get("ls_model_name")
    if not model:
        owner = run.owner
        model = getattr(owner, "model", None) or getattr(owner, "model_name", None)
    key = (type(run.owner), run.run_type, latest, get("ls_model_type"), get("ls_provider"), model)
    try:
        found = _requests.get(key)
        if found is not None and found[0] == params and _same_types(params, found[1]):
            return found[2]
    except Exception:  # a name or parameter that is no key or cannot be compared
        return _work_out(run, params, model, latest)
    if len(_requests) > 1024:  # many models or names: start again
        _requests.clear()
    out = _work_out(run, params, model, latest)
    # a copy: a callback handler may change the run's; and the numbers' types, as 1 == 1.0
    types = tuple((name, type(params[name])) for name in _PARAMS.keys() & params.keys())
    _requests[key] = (dict(params), types, out)
    return out


def _same_types(params: dict[str, Any], types: tuple[tuple[str, type], ...]) -> bool:
    """Whether each number is of the type it was (equal, ``1`` and ``1.0`` are not the
    same attribute, and a ``bool`` is none)."""
    return not types or all(type(params[name]) is kind for name, kind in types)


def _work_out(run: Run, params: dict[str, Any], model: Any, latest: bool) -> _Request:
    operation, provider = _find_names(run)
    shared: dict[str, Any] = {
        "gen_ai.operation.name": operation,
        "gen_ai.provider.name" if latest else "gen_ai.system": provider,
    }
    named = isinstance(model, str) and model
    if named:
        shared["gen_ai.request.model"] = model
    url = params.get("base_url") or params.get("url")
    if url:
        address, port = _server(url)
        if address:
            shared["server.address"] = address
            if port:
                shared["server.port"] = port
    request: dict[str, Any] = {}
    for key in _PARAMS.keys() & params.keys():  # a loop: no comprehension's frame
        value = params[key]
        if type(value) is int or type(value) is float:
            request[_PARAMS[key]] = value
    stop = params.get("stop")
    if stop:
        request["gen_ai.request.stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    # the span is named ``{operation} {model}``, as the conventions name a model call's span
    name = f"{operation} {model}" if named else operation
    return shared, {**shared, **request} if request else shared, name


_DETAILS = (
    ("input_token_details", "cache_read", "gen_ai.usage.cache_read.input_tokens"),
    ("input_token_details", "cache_creation", "gen_ai.usage.cache_creation.input_tokens"),
    ("output_token_details", "reasoning", "gen_ai.usage.reasoning.output_tokens"),
)


def answer(payload: Any) -> tuple[str | None, dict[str, Any]]:
    """The first generation's text and what is known of its response: the generation's
    info, for a chat answer its message's response metadata, and usage under ``usage``
    (a ``Usage``) with its details beside it (LangChain's ``input_token_details`` and
    ``output_token_details``)."""
    if not (isinstance(payload, LLMResult) and payload.generations and payload.generations[0]):
        return None, {}
    generation = payload.generations[0][0]
    info = generation.generation_info or {}
    if not isinstance(generation, ChatGeneration):
        return generation.text, info
    message = generation.message
    info = {**info, **(getattr(message, "_response_metadata", None) or {})}
    usage = getattr(message, "usage_metadata", None)
    if isinstance(usage, dict):
        info["usage"] = Usage(
            usage.get("input_tokens", 0), usage.get("output_tokens", 0),
            usage.get("total_tokens", 0), bool(info.get("usage_estimated")),
        )  # fmt: skip
        for key in ("input_token_details", "output_token_details"):
            if usage.get(key):
                info[key] = usage[key]
    return generation.text, info


def _usage(info: dict[str, Any], out: dict[str, Any]) -> None:
    """Token counts as span attributes: input, output, cache and reasoning details."""
    usage = info.get("usage")
    if not isinstance(usage, Usage):
        return
    out["gen_ai.usage.input_tokens"] = usage.prompt_tokens
    out["gen_ai.usage.output_tokens"] = usage.completion_tokens
    out["lmstream.usage.estimated"] = usage.estimated
    if "input_token_details" not in info and "output_token_details" not in info:
        return
    for group, key, attribute in _DETAILS:
        details = info.get(group)
        value = details.get(key) if isinstance(details, dict) else None
        if isinstance(value, int) and not isinstance(value, bool):
            out[attribute] = value


def _model(info: dict[str, Any]) -> str | None:
    """The model that answered: ``model_name`` as LangChain names it (or ``model``)."""
    model = info.get("model_name") or info.get("model")
    return model if isinstance(model, str) and model else None


def response_attributes(
    info: dict[str, Any], first: float | None, t0: float, out: dict[str, Any]
) -> None:
    """Add the finish reason, usage, response id and model (from ``info``, as ``answer``
    gives it) and the time to first chunk to ``out``."""
    reason = info.get("finish_reason")
    if isinstance(reason, str):
        out["gen_ai.response.finish_reasons"] = [reason]
    _usage(info, out)
    ident, model = info.get("id"), _model(info)
    if isinstance(ident, str) and ident:
        out["gen_ai.response.id"] = ident
    if model is not None:
        out["gen_ai.response.model"] = model
    if first is not None:
        out["gen_ai.response.time_to_first_chunk"] = first - t0


def error_attributes(error: BaseException) -> dict[str, Any]:
    """``error.type`` (the exception's full name), the time limit's phase or HTTP status."""
    kind = type(error)
    out: dict[str, Any] = {"error.type": f"{kind.__module__}.{kind.__qualname__}"}
    phase = getattr(error, "phase", None)
    if isinstance(phase, str):
        out["lmstream.timeout.phase"] = phase
    status = getattr(error, "status_code", None)
    if isinstance(status, int):
        out["http.response.status_code"] = status
    return out


def _prompt(run: Run) -> Any:
    inputs = run.inputs
    if isinstance(inputs, dict):
        for key in ("prompts", "messages"):
            found = inputs.get(key)
            if isinstance(found, list) and found:
                return found[0]
    return inputs


def _messages(value: Any, role: str) -> list[dict[str, Any]]:
    if isinstance(value, str):
        return [{"role": role, "parts": [{"type": "text", "content": value}]}]
    out = []
    for message in value if isinstance(value, list) else [value]:
        kind = getattr(message, "type", None) or getattr(message, "role", None) or role
        content = getattr(message, "content", message)
        out.append({"role": str(kind), "parts": [{"type": "text", "content": str(content)}]})
    return out


def capture_input(attributes: dict[str, Any], run: Run, latest: bool) -> None:
    """The prompt, as the conventions carry it: an attribute (latest) or, at the end, an event."""
    import json  # content capture only

    if latest:
        attributes["gen_ai.input.messages"] = json.dumps(_messages(_prompt(run), "user"))


def capture_output(
    span: Any, attributes: dict[str, Any], found: tuple[str | None, dict[str, Any]], latest: bool
) -> None:
    """The output text (``found``: what ``answer`` gives), as the conventions carry it."""
    text, info = found
    if text is None:
        return
    if latest:
        import json

        [message] = _messages(text, "assistant")
        message["finish_reason"] = info.get("finish_reason", "stop")
        attributes["gen_ai.output.messages"] = json.dumps([message])
    else:
        span.add_event("gen_ai.content.completion", {"gen_ai.completion": text})


def capture_prompt_event(span: Any, run: Run) -> None:
    """The prompt as the older conventions' span event."""
    import json

    messages = _messages(_prompt(run), "user")
    span.add_event("gen_ai.content.prompt", {"gen_ai.prompt": json.dumps(messages)})


def record(
    found: Instruments,
    attributes: dict[str, Any],
    times: tuple[float, float | None, float | None],
    info: dict[str, Any],
    error: BaseException | None,
) -> None:
    """A finished call's duration, token usage, time to first chunk and time per chunk.

    ``times`` is (duration, time to first chunk, mean time between chunks); ``info`` is
    what ``answer`` found in the result. The time per output chunk is recorded once per
    call, as the mean gap: a histogram record costs the SDK more than the rest of a
    chunk's way through lmstream.
    """
    seconds, first_chunk, per_chunk = times
    model = _model(info)
    if model is not None:
        attributes = {**attributes, "gen_ai.response.model": model}
    usage = info.get("usage")
    if isinstance(usage, Usage):
        found.tokens.record(usage.prompt_tokens, {**attributes, "gen_ai.token.type": "input"})
        found.tokens.record(usage.completion_tokens, {**attributes, "gen_ai.token.type": "output"})
    if first_chunk is not None:
        found.first_chunk.record(first_chunk, attributes)
    if per_chunk is not None:
        found.per_chunk.record(per_chunk, attributes)
    if error is not None:
        attributes = {**attributes, "error.type": error_attributes(error)["error.type"]}
    found.duration.record(seconds, attributes)
