"""``chatprovider check`` ends a failure with a hint: there is one for every reason that can
make a provider not Ready."""

from __future__ import annotations

from chatprovider.cli.check import HINTS
from chatprovider.domain.conditions import Reason

#: Reasons that never make Ready False (success, or Unknown).
NOT_FAILURES = {
    Reason.READY, Reason.NOT_CHECKED, Reason.SECRET_RESOLVED, Reason.NO_SECRET_REQUIRED,
    Reason.REACHABLE, Reason.AUTHENTICATED, Reason.NOT_VERIFIABLE, Reason.MODELS_DISCOVERED,
    Reason.STATIC_MODELS, Reason.VERIFIED, Reason.VERIFICATION_DISABLED,
}


def test_every_failure_reason_has_a_hint() -> None:
    assert set(HINTS) == set(Reason) - NOT_FAILURES


def test_hints_are_sentences_without_placeholders() -> None:
    for reason, hint in HINTS.items():
        assert hint.endswith((".", "?")), reason
        assert "<" not in hint and "TODO" not in hint, reason
