"""docs/troubleshooting.md and docs/quotas.md explain every reason the operator writes on a
ChatQuota that is not a success."""

from __future__ import annotations

from pathlib import Path

from chatprovider.domain.conditions import QuotaReason

DOCS = Path(__file__).resolve().parents[3] / "docs"
SUCCESS = {QuotaReason.READY, QuotaReason.USAGE_READ}


def test_every_quota_reason_is_documented() -> None:
    troubleshooting = (DOCS / "troubleshooting.md").read_text(encoding="utf-8")
    quotas = (DOCS / "quotas.md").read_text(encoding="utf-8")
    for reason in QuotaReason:
        assert f"| `{reason.value}` |" in quotas, reason
        if reason not in SUCCESS:
            assert f"| `{reason.value}` |" in troubleshooting, reason
