"""How many tokens a request reserves before it is sent, and what it is charged after (pure).

**The reservation** is the prompt estimate plus the most the answer may hold:

=========================  ====================================================================
operation                  answer (completion) tokens reserved
=========================  ====================================================================
``chat/completions``       ``max_completion_tokens``, else ``max_tokens``; times ``n``
``completions``            ``max_tokens``; times the larger of ``n`` and ``best_of``
``responses``              ``max_output_tokens``
``messages``               ``max_tokens``
``embeddings``             0
``messages/count_tokens``  0 (and no prompt either: nothing is generated)
=========================  ====================================================================

A request that sets no maximum (or one that is not a positive integer, which the upstream will
refuse anyway) reserves :attr:`ReservationPolicy.default_completion_tokens` per choice.

**The prompt estimate** is the UTF-8 size of the text the request carries, divided by
:attr:`ReservationPolicy.bytes_per_token` (4, rounded up): every string under the members that
become the prompt (``messages``, ``prompt``, ``input``, ``instructions``, ``system``, ``tools``,
``functions``, ``suffix``), plus one token per integer there (pre-tokenised prompts and
embeddings inputs). An inline ``data:`` URL (an image or a file) counts
:attr:`ReservationPolicy.media_tokens` instead of its size. Four bytes a token is what OpenAI
quotes for English; it overestimates most code and underestimates some scripts, which the
settlement corrects.

**The settlement** charges the usage the upstream reported (:class:`~chatprovider.domain.sse.Usage`:
``usage`` of an answer, or of a stream's last events): the difference to the reservation is
refunded or charged extra, on the same counters. When an answer reports no usage the
reservation itself is charged (the caller cannot escape accounting by an upstream that reports
nothing); when the upstream failed before sending an answer, no token is charged (the request
still counts).

**A stream cut short** (the client went away, the upstream broke off, the relay ended it) has
reported no final usage: it is charged what was relayed (:func:`cut_stream_demand`): the prompt
the upstream reported (Anthropic reports it first), else the estimate, and one completion token
per relayed event that carried a token (or the completion count reported so far, if larger),
at most the reservation. A relay that dies mid-stream settles nothing: its reservation stays
charged, which bounds what was generated (no answer outgrows ``max_tokens``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from chatprovider.domain.apis import Operation
from chatprovider.domain.sse import Usage

__all__ = ["Demand", "ReservationPolicy", "charged_demand", "cut_stream_demand", "demand_of",
           "prompt_estimate"]

_PROMPT_MEMBERS = ("messages", "prompt", "input", "instructions", "system", "tools",
                   "functions", "suffix")
_DEPTH = 64  # deeper structures are not walked further (their strings are not counted)


@dataclass(frozen=True, slots=True)
class ReservationPolicy:
    """The parameters of the estimate."""

    default_completion_tokens: int = 1024
    """Answer tokens reserved per choice when the request sets no maximum."""
    bytes_per_token: int = 4
    """How many bytes of prompt text count as one token."""
    media_tokens: int = 1000
    """What an inline ``data:`` URL (image, audio, file) counts."""


@dataclass(frozen=True, slots=True)
class Demand:
    """Tokens of a request: reserved (before) or charged (after)."""

    prompt: int
    completion: int

    @property
    def total(self) -> int:
        return self.prompt + self.completion


def _positive_int(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return None


def _text_size(value: Any, policy: ReservationPolicy, depth: int = 0) -> tuple[int, int]:
    """(bytes of text, tokens counted directly) under ``value``."""
    if isinstance(value, str):
        if value.startswith("data:"):
            return 0, policy.media_tokens
        return len(value.encode("utf-8", "replace")), 0
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return 0, 0
    if isinstance(value, int):
        return 0, 1
    if depth >= _DEPTH:
        return 0, 0
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    size = tokens = 0
    for item in items:
        s, t = _text_size(item, policy, depth + 1)
        size, tokens = size + s, tokens + t
    return size, tokens


def prompt_estimate(members: Mapping[str, Any], policy: ReservationPolicy) -> int:
    """The estimated prompt tokens of a request body's top-level ``members``."""
    size = tokens = 0
    for name in _PROMPT_MEMBERS:
        if name in members:
            s, t = _text_size(members[name], policy)
            size, tokens = size + s, tokens + t
    return math.ceil(size / policy.bytes_per_token) + tokens


def _choices(members: Mapping[str, Any], *names: str) -> int:
    return max([_positive_int(members.get(name)) or 1 for name in names])


def demand_of(operation: Operation, members: Mapping[str, Any],
              policy: ReservationPolicy = ReservationPolicy()) -> Demand:
    """What a request to ``operation`` with the body ``members`` reserves."""
    if operation is Operation.COUNT_TOKENS:
        return Demand(0, 0)
    prompt = prompt_estimate(members, policy)
    default = policy.default_completion_tokens
    if operation is Operation.EMBEDDINGS:
        return Demand(prompt, 0)
    if operation is Operation.CHAT:
        most = (_positive_int(members.get("max_completion_tokens"))
                or _positive_int(members.get("max_tokens")) or default)
        return Demand(prompt, most * _choices(members, "n"))
    if operation is Operation.COMPLETIONS:
        most = _positive_int(members.get("max_tokens")) or default
        return Demand(prompt, most * _choices(members, "n", "best_of"))
    if operation is Operation.RESPONSES:
        return Demand(prompt, _positive_int(members.get("max_output_tokens")) or default)
    return Demand(prompt, _positive_int(members.get("max_tokens")) or default)


def charged_demand(reserved: Demand, usage: Usage | None, *, answered: bool) -> Demand:
    """What a request is charged: the reported ``usage``; else the reservation when the upstream
    ``answered`` (a stream cut short included), nothing when it failed before answering."""
    if usage is not None:
        return Demand(max(usage.prompt_tokens, 0), max(usage.completion_tokens, 0))
    return reserved if answered else Demand(0, 0)


def cut_stream_demand(reserved: Demand, usage: Usage | None, relayed_tokens: int) -> Demand:
    """What a stream that ended early is charged: the prompt reported (else the estimate), and
    the larger of the completion tokens reported so far and the ``relayed_tokens`` (events
    that carried a token), never more completion tokens than were reserved."""
    prompt = usage.prompt_tokens if usage is not None and usage.prompt_tokens > 0 \
        else reserved.prompt
    completion = max(usage.completion_tokens if usage is not None else 0, relayed_tokens, 0)
    return Demand(max(prompt, 0), min(completion, reserved.completion))
