"""lmstream: one streaming interface for every language model.

``invoke``, ``ainvoke``, ``batch``, ``abatch``, ``batch_as_completed``, ``stream``,
``astream`` and ``astream_events`` on every model and every chain, token by token where
the backend can, one honest chunk where it can't.
"""

from lmstream._accumulate import AddableDict
from lmstream._types import RunnableConfig, StreamEvent
from lmstream.callbacks import AsyncCallbackHandler, BaseCallbackHandler, CallbackManager
from lmstream.chunks import FinishReason, Generation, GenerationChunk, LLMResult, Usage
from lmstream.compose import (
    RunnableAssign,
    RunnableParallel,
    RunnablePassthrough,
    RunnableSequence,
)
from lmstream.config import ensure_config, get_config_list, merge_configs, patch_config
from lmstream.errors import (
    APIConnectionError,
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
    ModelLoadError,
    NotFoundError,
    PermissionDeniedError,
    ProtocolError,
    ProviderError,
    RateLimitError,
    ServerError,
    StreamingUnsupportedError,
)
from lmstream.events import EventFilter, adispatch_custom_event, dispatch_custom_event
from lmstream.functions import RunnableGenerator, RunnableLambda
from lmstream.llm import LLM, BaseLLM
from lmstream.parsers import StrOutputParser
from lmstream.prompts import ChatPromptValue, PromptTemplate, PromptValue, StringPromptValue
from lmstream.providers.fake import FakeLLM
from lmstream.runnable import Runnable, StreamingStep, coerce_to_runnable
from lmstream.wrappers import RunnableBinding, RunnableRetry, RunnableWithFallbacks

__version__ = "0.1.0"

__all__ = [
    "LLM",
    "APIConnectionError",
    "APIError",
    "APIStatusError",
    "APITimeoutError",
    "AddableDict",
    "AsyncCallbackHandler",
    "AuthenticationError",
    "BadRequestError",
    "BaseCallbackHandler",
    "BaseLLM",
    "CallbackError",
    "CallbackManager",
    "ChatPromptValue",
    "ContextLengthError",
    "EventFilter",
    "FakeLLM",
    "FinishReason",
    "Generation",
    "GenerationChunk",
    "GenerationError",
    "InvalidInputError",
    "LLMResult",
    "LMStreamError",
    "ModelLoadError",
    "NotFoundError",
    "PermissionDeniedError",
    "PromptTemplate",
    "PromptValue",
    "ProtocolError",
    "ProviderError",
    "RateLimitError",
    "Runnable",
    "RunnableAssign",
    "RunnableBinding",
    "RunnableConfig",
    "RunnableGenerator",
    "RunnableLambda",
    "RunnableParallel",
    "RunnablePassthrough",
    "RunnableRetry",
    "RunnableSequence",
    "RunnableWithFallbacks",
    "ServerError",
    "StrOutputParser",
    "StreamEvent",
    "StreamingStep",
    "StreamingUnsupportedError",
    "StringPromptValue",
    "Usage",
    "__version__",
    "adispatch_custom_event",
    "coerce_to_runnable",
    "dispatch_custom_event",
    "ensure_config",
    "get_config_list",
    "merge_configs",
    "patch_config",
]
