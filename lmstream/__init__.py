"""lmstream: one streaming interface for every language model.

``invoke``, ``ainvoke``, ``batch``, ``abatch``, ``batch_as_completed``, ``stream``,
``astream`` and ``astream_events`` on every model and every chain, token by token where
the backend can, one honest chunk where it can't.
"""

import typing as _typing

from lmstream._accumulate import AddableDict
from lmstream._sse import SSEDecoder, SSEEvent
from lmstream._types import RunnableConfig, StreamEvent
from lmstream.callbacks import AsyncCallbackHandler, BaseCallbackHandler, CallbackManager
from lmstream.chat_model import BaseChatModel, SimpleChatModel
from lmstream.chat_prompts import ChatPromptTemplate, MessagesPlaceholder
from lmstream.chunks import FinishReason, Generation, GenerationChunk, LLMResult, Usage
from lmstream.compose import (
    RunnableAssign,
    RunnableMap,
    RunnableParallel,
    RunnablePassthrough,
    RunnableSequence,
)
from lmstream.config import ensure_config, get_config_list, merge_configs, patch_config
from lmstream.errors import (
    APIConnectionError,
    APIContextLengthError,
    APIError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    CallbackError,
    ContextLengthError,
    GenerationError,
    InvalidInputError,
    LMStreamError,
    MissingVariablesError,
    ModelLoadError,
    NotFoundError,
    OutputParserError,
    PermissionDeniedError,
    ProtocolError,
    ProviderError,
    RateLimitError,
    ServerError,
    StreamingUnsupportedError,
    UnsupportedMethodError,
)
from lmstream.events import EventFilter, adispatch_custom_event, dispatch_custom_event
from lmstream.functions import RunnableGenerator, RunnableLambda, chain
from lmstream.llm import LLM, BaseLLM
from lmstream.message_input import (
    ChatGeneration,
    ChatGenerationChunk,
    ChatResult,
    convert_to_messages,
)
from lmstream.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    BaseMessageChunk,
    HumanMessage,
    HumanMessageChunk,
    SystemMessage,
    SystemMessageChunk,
    ToolCall,
    ToolCallChunk,
    ToolMessage,
    ToolMessageChunk,
    UsageMetadata,
)
from lmstream.parsers import StrOutputParser
from lmstream.prompts import ChatPromptValue, PromptTemplate, PromptValue, StringPromptValue
from lmstream.providers.fake import FakeLLM
from lmstream.providers.fake_chat import FakeChatModel
from lmstream.registry import (
    ProviderInfo,
    available_providers,
    builtin_classes,
    load_chat_model,
    load_llm,
    register_provider,
)
from lmstream.runnable import Runnable, StreamingStep, coerce_to_runnable
from lmstream.settings import Rule, setting
from lmstream.structured import (
    JsonOutputParser,
    Partial,
    PydanticOutputParser,
    ReasoningParser,
    ReasoningSplitter,
)
from lmstream.tool_parsers import (
    JsonOutputKeyToolsParser,
    JsonOutputToolsParser,
    PydanticToolsParser,
)
from lmstream.wrappers import RunnableBinding, RunnableRetry, RunnableWithFallbacks

if _typing.TYPE_CHECKING:  # for type checkers only: at run time these load on first use
    from lmstream.providers._http import SizeLimits as SizeLimits
    from lmstream.providers._http_chat import HTTPChatModel as HTTPChatModel
    from lmstream.providers._http_llm import HTTPLLM as HTTPLLM
    from lmstream.providers.llamacpp import LlamaCpp as LlamaCpp
    from lmstream.providers.llamacpp_chat import ChatLlamaCpp as ChatLlamaCpp
    from lmstream.providers.openai import OpenAI as OpenAI
    from lmstream.providers.openai_chat import ChatOpenAI as ChatOpenAI
    from lmstream.providers.remote import RemoteLLM as RemoteLLM
    from lmstream.providers.remote_chat import RemoteChatModel as RemoteChatModel
    from lmstream.providers.router import ChatRouter as ChatRouter
    from lmstream.providers.router import Router as Router

__version__ = "0.1.0"

# Providers with heavy dependencies load on first use: ``from lmstream import LlamaCpp``
# imports llama.cpp then, and a missing extra raises an ImportError naming it. The
# registry lists them; HTTPLLM and HTTPChatModel, the bases of HTTP providers, and the
# SizeLimits their readers are given need httpx.
_LAZY = {
    **builtin_classes(),
    "HTTPLLM": "lmstream.providers._http_llm",
    "HTTPChatModel": "lmstream.providers._http_chat",
    "ChatOpenAI": "lmstream.providers.openai_chat",
    "SizeLimits": "lmstream.providers._http",
    "ChatLlamaCpp": "lmstream.providers.llamacpp_chat",
    "RemoteChatModel": "lmstream.providers.remote_chat",
    "Router": "lmstream.providers.router",
    "ChatRouter": "lmstream.providers.router",
}
del builtin_classes


def __getattr__(name: str) -> _typing.Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'lmstream' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*__all__, *_LAZY])


__all__ = [
    "LLM",
    "AIMessage",
    "AIMessageChunk",
    "APIConnectionError",
    "APIContextLengthError",
    "APIError",
    "APIStatusError",
    "APITimeoutError",
    "AddableDict",
    "AsyncCallbackHandler",
    "AuthenticationError",
    "BadRequestError",
    "BaseCallbackHandler",
    "BaseChatModel",
    "BaseLLM",
    "BaseMessage",
    "BaseMessageChunk",
    "CallbackError",
    "CallbackManager",
    "ChatGeneration",
    "ChatGenerationChunk",
    "ChatPromptTemplate",
    "ChatPromptValue",
    "ChatResult",
    "ContextLengthError",
    "EventFilter",
    "FakeChatModel",
    "FakeLLM",
    "FinishReason",
    "Generation",
    "GenerationChunk",
    "GenerationError",
    "HumanMessage",
    "HumanMessageChunk",
    "InvalidInputError",
    "JsonOutputKeyToolsParser",
    "JsonOutputParser",
    "JsonOutputToolsParser",
    "LLMResult",
    "LMStreamError",
    "MessagesPlaceholder",
    "MissingVariablesError",
    "ModelLoadError",
    "NotFoundError",
    "OutputParserError",
    "Partial",
    "PermissionDeniedError",
    "PromptTemplate",
    "PromptValue",
    "ProtocolError",
    "ProviderError",
    "ProviderInfo",
    "PydanticOutputParser",
    "PydanticToolsParser",
    "RateLimitError",
    "ReasoningParser",
    "ReasoningSplitter",
    "Rule",
    "Runnable",
    "RunnableAssign",
    "RunnableBinding",
    "RunnableConfig",
    "RunnableGenerator",
    "RunnableLambda",
    "RunnableMap",
    "RunnableParallel",
    "RunnablePassthrough",
    "RunnableRetry",
    "RunnableSequence",
    "RunnableWithFallbacks",
    "SSEDecoder",
    "SSEEvent",
    "ServerError",
    "SimpleChatModel",
    "StrOutputParser",
    "StreamEvent",
    "StreamingStep",
    "StreamingUnsupportedError",
    "StringPromptValue",
    "SystemMessage",
    "SystemMessageChunk",
    "ToolCall",
    "ToolCallChunk",
    "ToolMessage",
    "ToolMessageChunk",
    "UnsupportedMethodError",
    "Usage",
    "UsageMetadata",
    "__version__",
    "adispatch_custom_event",
    "available_providers",
    "chain",
    "coerce_to_runnable",
    "convert_to_messages",
    "dispatch_custom_event",
    "ensure_config",
    "get_config_list",
    "load_chat_model",
    "load_llm",
    "merge_configs",
    "patch_config",
    "register_provider",
    "setting",
]
