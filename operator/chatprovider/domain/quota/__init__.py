"""Quotas (pure): which limits govern a request, its reservation, settlement and answers.

Modules: ``windows`` (fixed UTC windows, why not sliding), ``subjects`` (RBAC-style caller
matching), ``limits`` (the quotas that apply to a caller and provider, counter keys),
``demand`` (the reservation's estimate, what is charged), ``ledger`` (charges and adjustments a
counter store applies, the admission rule), ``answers`` (rate-limit headers, the 429s),
``report`` (``status.usage``). The stores are in :mod:`chatprovider.counters`; docs/quotas.md
describes the whole.
"""

from chatprovider.domain.quota.answers import rate_limit_headers, refusal, store_unavailable
from chatprovider.domain.quota.demand import (
    Demand,
    ReservationPolicy,
    charged_demand,
    demand_of,
)
from chatprovider.domain.quota.ledger import (
    Adjustment,
    Charge,
    Outcome,
    Reservation,
    admit,
    reserve,
)
from chatprovider.domain.quota.limits import Limit, Metric, Quota, applicable_limits
from chatprovider.domain.quota.report import usage_report
from chatprovider.domain.quota.subjects import CallerIdentity
from chatprovider.domain.quota.windows import Window

__all__ = [
    "Adjustment",
    "CallerIdentity",
    "Charge",
    "Demand",
    "Limit",
    "Metric",
    "Outcome",
    "Quota",
    "Reservation",
    "ReservationPolicy",
    "Window",
    "admit",
    "applicable_limits",
    "charged_demand",
    "demand_of",
    "rate_limit_headers",
    "refusal",
    "reserve",
    "store_unavailable",
    "usage_report",
]
