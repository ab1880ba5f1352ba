"""The HTTP provider base is generic: no provider's module in it, its defaults stated once."""

from __future__ import annotations

import ast
from pathlib import Path

from lmstream import ChatOpenAI, HumanMessage, OpenAI, RemoteLLM
from lmstream.providers._http import RetryPolicy, TimeLimits

PROVIDERS = Path(__file__).resolve().parents[2] / "lmstream" / "providers"
GENERIC = (
    "_http",
    "_http_llm",
    "_http_model",
    "_http_errors",
    "_clients",
    "_watchdog",
    "_frames",
    "_reads",
    "_retry",
)


def _imports(module: str) -> set[str]:
    tree = ast.parse((PROVIDERS / f"{module}.py").read_text())
    found = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    return found | {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}


def test_generic_http_code_imports_no_provider_module() -> None:
    for module in GENERIC:
        providers = {
            name for name in _imports(module)
            if name.startswith("lmstream.providers.") and name.rpartition(".")[2] not in GENERIC
        }  # fmt: skip
        assert providers == set(), module


def test_every_http_provider_has_the_same_time_limits_and_retries() -> None:
    limits, policy = TimeLimits(), RetryPolicy()
    url = "http://127.0.0.1:9/v1"
    for llm in (OpenAI(base_url=url), ChatOpenAI(base_url=url), RemoteLLM(url[:-3])):
        assert (llm.connect_timeout, llm.first_token_timeout, llm.idle_timeout, llm.timeout) == (
            limits.connect, limits.first_token, limits.idle, limits.total,
        )  # fmt: skip
        assert (llm.max_retries, llm.retry_backoff) == (policy.max_retries, policy.backoff)
        prompt = [HumanMessage("p")] if isinstance(llm, ChatOpenAI) else "p"
        assert llm._plan(prompt, None, {"idle_timeout": 3}, True).limits.idle == 3
