"""What the relay learned about one request, for its metrics and its access-log line."""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import web

from chatprovider.domain.apis import Api, api_of_path
from chatprovider.domain.sse import Usage
from chatprovider.domain.virtual_models import ChatModelRef

__all__ = ["Exchange", "exchange_of", "start_exchange"]


@dataclass(eq=False)
class Exchange:
    """Filled in as the request proceeds. Holds no header value and no body."""

    started: float
    api: Api = Api.OPENAI
    """Whose error envelope the answer uses (from the request's path)."""
    namespace: str = ""
    provider: str = ""
    model: str = ""
    user: str = ""
    chat_model: ChatModelRef | None = None
    """The ChatModel (virtual model) the request named, if any: its ``use`` authorized it."""
    stream: bool = False
    first_token_at: float | None = None
    usage: Usage | None = None
    failure: str | None = None
    """The kind of upstream failure, if any (also for a stream ended by an error event)."""
    attempts: int = 0
    upstream_status: int | None = None
    """The HTTP status the upstream answered to the current attempt (None: no answer yet)."""
    response_id: str | None = None
    """The id of the Responses answer relayed (remembered for ``previous_response_id``)."""
    completed: bool = False
    """A stream's ``data: [DONE]`` was forwarded (a client may hang up right after it)."""
    prepared: bool = False
    """A streamed answer has started: no other answer can be given any more."""
    relayed_tokens: int = 0
    """Events of a stream that carried a token (what a stream cut short is charged)."""
    quota_headers: dict[str, str] = field(default_factory=dict)
    """The rate-limit headers of the quotas that admitted the attempt: every answer to it
    carries them (:mod:`~chatprovider.relay.metering`)."""
    hide_usage: bool = False
    """The relay asked a chat or completions stream for its usage: hide it from the caller."""

    def routed(self, namespace: str, provider: str, model: str) -> None:
        self.namespace, self.provider, self.model = namespace, provider, model
        self.failure = None
        self.upstream_status = None
        self.attempts += 1


_KEY: web.RequestKey[Exchange] = web.RequestKey("chatprovider.relay.exchange", Exchange)


def start_exchange(request: web.Request, started: float) -> Exchange:
    exchange = Exchange(started, api_of_path(request.path))
    request[_KEY] = exchange
    return exchange


def exchange_of(request: web.Request) -> Exchange:
    return request[_KEY]  # set by the error middleware
