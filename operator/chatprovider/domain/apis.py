"""The APIs the relay speaks, and the operations it forwards (pure).

An :class:`Operation` is one forwarded route: its path under the provider's base URL (and under
the relay's ``/v1``), the :class:`Api` whose conventions it follows (the error envelope, how the
caller's token may be sent, how the provider's key is sent) and whether it may stream. Every
operation is routed by the request's ``model`` in the same way; nothing is translated between
APIs.

=============================  =========  =======  ============================================
operation (``/v1/...``)        API        streams  the provider's key upstream
=============================  =========  =======  ============================================
``chat/completions``           openai     yes      ``Authorization: Bearer``
``completions``                openai     yes      ``Authorization: Bearer``
``embeddings``                 openai     no       ``Authorization: Bearer``
``responses``                  openai     yes      ``Authorization: Bearer``
``messages``                   anthropic  yes      ``Authorization: Bearer`` and ``x-api-key``
``messages/count_tokens``      anthropic  no       ``Authorization: Bearer`` and ``x-api-key``
=============================  =========  =======  ============================================
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["Api", "Operation", "api_of_path"]

_PREFIX = "/v1/"


class Api(StrEnum):
    """Whose conventions a route follows."""

    OPENAI = "openai"
    ANTHROPIC = "anthropic"


class Operation(StrEnum):
    """The operations the relay forwards; the value is the path under ``/v1``."""

    CHAT = "chat/completions"
    COMPLETIONS = "completions"
    EMBEDDINGS = "embeddings"
    RESPONSES = "responses"
    MESSAGES = "messages"
    COUNT_TOKENS = "messages/count_tokens"

    @property
    def api(self) -> Api:
        return Api.ANTHROPIC if self in _ANTHROPIC else Api.OPENAI

    @property
    def streams(self) -> bool:
        """Whether ``"stream": true`` asks for server-sent events."""
        return self not in _NOT_STREAMED

    @property
    def path(self) -> str:
        """The relay's route, such as ``/v1/chat/completions``."""
        return _PREFIX + self.value

    def url(self, base_url: str) -> str:
        """The upstream URL under a provider's API base (``http://vllm:8000/v1``)."""
        return f"{base_url}/{self.value}"


_ANTHROPIC = frozenset({Operation.MESSAGES, Operation.COUNT_TOKENS})
_NOT_STREAMED = frozenset({Operation.EMBEDDINGS, Operation.COUNT_TOKENS})


def api_of_path(path: str) -> Api:
    """The API of a request path (for its error envelope): Anthropic's for ``/v1/messages`` and
    every path under it (so an unknown ``/v1/messages/batches`` is a 404 the Anthropic SDK
    reads), OpenAI's for every other route."""
    for operation in _ANTHROPIC:
        if path == operation.path or path.startswith(operation.path + "/"):
            return Api.ANTHROPIC
    return Api.OPENAI
