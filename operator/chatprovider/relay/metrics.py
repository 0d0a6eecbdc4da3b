"""Prometheus metrics of one relay, in its own registry (no global state).

The per-caller counters (``chatprovider_relay_caller_requests``, ``..._caller_tokens``) name
at most ``caller_limit`` distinct callers per process, the later ones as ``caller="other"``
(:class:`~chatprovider.domain.callers.CallerLabels`): their series are at most about
``caller_limit`` times the (provider, model) pairs in use, times two directions for tokens.
"""

from __future__ import annotations

from typing import Generic, TypeVar

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from chatprovider.domain.callers import CallerLabels

__all__ = ["CONTENT_TYPE", "Labelled", "RelayMetrics"]

CONTENT_TYPE = CONTENT_TYPE_LATEST

_M = TypeVar("_M", Counter, Gauge, Histogram)

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_TTFT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60)


class Labelled(Generic[_M]):
    """A metric with labels whose series are found in one dictionary look-up on the hot path
    (``prometheus_client``'s ``labels()`` checks and converts the values and takes a lock on
    every call). Series are never removed, so what is kept here is what the metric keeps."""

    def __init__(self, metric: _M) -> None:
        self.metric: _M = metric
        self._series: dict[tuple[str, ...], _M] = {}

    def labels(self, *values: str) -> _M:
        series = self._series.get(values)
        if series is None:
            series = self._series[values] = self.metric.labels(*values)
        return series


class RelayMetrics:
    """The relay's instruments. Labels: ``namespace``, ``provider`` (empty when a request was
    not routed), ``model`` (the upstream id), ``code`` (HTTP status; 499 when the client went
    away); per caller, ``caller_namespace`` (a ServiceAccount's namespace, else empty) and
    ``caller``; on error answers, ``status`` and ``reason`` (the error's ``code``)."""

    def __init__(self, caller_limit: int = 1000) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.callers = CallerLabels(caller_limit)
        r = self.registry
        self.requests = Labelled(Counter(
            "chatprovider_relay_requests", "Requests answered by the relay.",
            ["namespace", "provider", "model", "code"], registry=r))
        self.latency = Labelled(Histogram(
            "chatprovider_relay_request_duration_seconds",
            "Time from request to the end of the answer (streams: to the last byte).",
            ["namespace", "provider"], buckets=_LATENCY_BUCKETS, registry=r))
        self.ttft = Labelled(Histogram(
            "chatprovider_relay_time_to_first_token_seconds",
            "Time from request to the first streamed event that carries a token.",
            ["namespace", "provider"], buckets=_TTFT_BUCKETS, registry=r))
        self.tokens = Labelled(Counter(
            "chatprovider_relay_tokens", "Tokens reported by upstream usage.",
            ["namespace", "provider", "model", "direction"], registry=r))
        self.upstream_failures = Labelled(Counter(
            "chatprovider_relay_upstream_failures",
            "Upstream calls that failed (connection, timeout, cut stream, bad answer).",
            ["namespace", "provider", "kind"], registry=r))
        self.in_flight = Labelled(Gauge(
            "chatprovider_relay_in_flight", "Requests being relayed to a provider now.",
            ["namespace", "provider"], registry=r))
        self.busy = Labelled(Counter(
            "chatprovider_relay_provider_busy",
            "Requests refused (429) because the provider's concurrency limit was reached.",
            ["namespace", "provider"], registry=r))
        self.ejections = Labelled(Counter(
            "chatprovider_relay_ejections",
            "Providers taken out of routing by the relay's own observations (passive health).",
            ["namespace", "provider", "reason"], registry=r))
        self.returns = Labelled(Counter(
            "chatprovider_relay_returns",
            "Ejected providers back in routing (reason: rechecked or probation_ended).",
            ["namespace", "provider", "reason"], registry=r))
        self.ejected = Gauge(
            "chatprovider_relay_ejected_providers",
            "Providers out of this relay's routing now (passive health).", registry=r)

        self.caller_requests = Labelled(Counter(
            "chatprovider_relay_caller_requests",
            "Requests routed to a provider, by caller (at most caller_limit callers named).",
            ["caller_namespace", "caller", "namespace", "provider", "model"], registry=r))
        self.caller_tokens = Labelled(Counter(
            "chatprovider_relay_caller_tokens",
            "Tokens reported by upstream usage, by caller (at most caller_limit callers named).",
            ["caller_namespace", "caller", "namespace", "provider", "model", "direction"],
            registry=r))
        self.error_answers = Labelled(Counter(
            "chatprovider_relay_error_answers",
            "Error answers of the relay by status and error code (rate_limit_exceeded,"
            " insufficient_quota, provider_busy, ...; upstream for an upstream's own error).",
            ["namespace", "provider", "status", "reason"], registry=r))

    def render(self) -> bytes:
        return generate_latest(self.registry)
