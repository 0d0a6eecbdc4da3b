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

from collections.abc import Sequence
from enum import StrEnum

__all__ = ["PROBED", "Api", "Operation", "api_of_path", "offered_by", "offers", "probe_body"]

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


#: The operations a check probes (chat completions are what a ChatProvider is: never probed).
PROBED = (Operation.COMPLETIONS, Operation.EMBEDDINGS, Operation.RESPONSES, Operation.MESSAGES,
          Operation.COUNT_TOKENS)
#: The statuses by which a server says it has no such route.
_NOT_OFFERED = frozenset({404, 405, 501})


def probe_body(operation: Operation, model: str) -> dict[str, object]:
    """The cheap probe of ``operation``: a request naming a model the server listed, without the
    input the operation needs, which a server refuses (400 or 422) on a route it offers before
    any inference. Token limits are set as well, so that a server which fills in a missing
    input anyway generates at most one token."""
    body: dict[str, object] = {"model": model}
    if operation in (Operation.COMPLETIONS, Operation.MESSAGES):
        body["max_tokens"] = 1
    elif operation is Operation.RESPONSES:
        body["max_output_tokens"] = 16  # the Responses API's own minimum
    return body


def offered_by(status: int | None) -> bool:
    """Whether a probe's answer says the route exists: anything but 404, 405 and 501 (a
    refused key or a failed call say nothing against it, so they count as offered)."""
    return status not in _NOT_OFFERED


def offers(apis: Sequence[str], operation: Operation) -> bool:
    """Whether a provider whose ``status.apis`` is ``apis`` may be sent ``operation``: every
    operation while ``apis`` is not known (empty)."""
    return not apis or operation.value in apis


def api_of_path(path: str) -> Api:
    """The API of a request path (for its error envelope): Anthropic's for ``/v1/messages`` and
    every path under it (so an unknown ``/v1/messages/batches`` is a 404 the Anthropic SDK
    reads), OpenAI's for every other route."""
    for operation in _ANTHROPIC:
        if path == operation.path or path.startswith(operation.path + "/"):
            return Api.ANTHROPIC
    return Api.OPENAI
