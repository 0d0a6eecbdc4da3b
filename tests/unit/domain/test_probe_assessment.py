"""The decision table from what a check observed to conditions, models and retry policy."""

from __future__ import annotations

import pytest

from chatprovider.domain.apis import Operation
from chatprovider.domain.conditions import Reason
from chatprovider.domain.discovery import ModelEntry
from chatprovider.domain.probe import CallOutcome, ProbeResult, Retry, assess, worth_verifying

OK_MODELS = CallOutcome(status=200, latency_ms=3, models=(ModelEntry("m1"), ModelEntry("m2")))


def conds(result: ProbeResult) -> dict[str, tuple[str, str]]:
    return {c.type: (c.status, c.reason) for c in assess(result).conditions}


def test_healthy_provider_is_ready_with_models():
    a = assess(ProbeResult(models_call=OK_MODELS))
    assert a.ready.status == "True" and a.retry is Retry.NONE
    assert [m.id for m in a.models] == ["m1", "m2"]
    c = conds(ProbeResult(models_call=OK_MODELS))
    assert c["EndpointReachable"] == ("True", "Reachable")
    assert c["Authenticated"] == ("True", "Authenticated")
    assert c["Verified"] == ("Unknown", "VerificationDisabled")


@pytest.mark.parametrize(("references", "retry"), [
    (Reason.SECRET_NOT_FOUND, Retry.PERMANENT),
    (Reason.SECRET_KEY_MISSING, Retry.PERMANENT),
    (Reason.CA_BUNDLE_NOT_FOUND, Retry.PERMANENT),
])
def test_unresolved_references_stop_before_any_call(references, retry):
    a = assess(ProbeResult(references=(references, "x")))
    assert a.ready.reason == references and a.retry is retry
    assert conds(ProbeResult(references=(references, "x")))["EndpointReachable"][1] == "NotChecked"


@pytest.mark.parametrize(("call", "reason", "retry"), [
    (CallOutcome(failure=Reason.CONNECTION_REFUSED, detail="refused"), "ConnectionRefused",
     Retry.TRANSIENT),
    (CallOutcome(failure=Reason.DNS_FAILURE), "DNSFailure", Retry.TRANSIENT),
    (CallOutcome(failure=Reason.TIMEOUT), "Timeout", Retry.TRANSIENT),
    (CallOutcome(failure=Reason.EGRESS_DENIED), "EgressDenied", Retry.PERMANENT),
    (CallOutcome(failure=Reason.TLS_UNKNOWN_AUTHORITY), "TLSUnknownAuthority", Retry.PERMANENT),
    (CallOutcome(status=401), "Unauthorized", Retry.PERMANENT),
    (CallOutcome(status=403), "Forbidden", Retry.PERMANENT),
    (CallOutcome(status=429), "RateLimited", Retry.TRANSIENT),
    (CallOutcome(status=503), "UpstreamServerError", Retry.TRANSIENT),
    (CallOutcome(status=200, shape_error="not JSON"), "InvalidModelsResponse", Retry.TRANSIENT),
    (CallOutcome(status=418), "UnexpectedStatus", Retry.TRANSIENT),
    (CallOutcome(status=404), "ModelsRouteNotOffered", Retry.PERMANENT),
])
def test_each_failure_has_its_reason_and_retry_class(call, reason, retry):
    a = assess(ProbeResult(models_call=call))
    assert a.ready.status == "False"
    assert a.ready.reason == reason
    assert a.retry is retry


@pytest.mark.parametrize("status", [404, 405])
def test_models_route_not_offered_is_fine_with_static_models(status):
    result = ProbeResult(models_call=CallOutcome(status=status), static_models=("tgi",))
    a = assess(result)
    assert a.ready.status == "True"
    assert [(m.id, m.source) for m in a.models] == [("tgi", "static")]
    assert conds(result)["Authenticated"] == ("Unknown", "NotVerifiable")


def test_allow_list_can_leave_no_models():
    a = assess(ProbeResult(models_call=OK_MODELS, allow=("llama*",)))
    assert a.ready.reason == "NoModels"


def test_discovery_disabled_uses_static_models_or_reports_none():
    assert assess(ProbeResult(static_models=("a",))).ready.status == "True"
    assert assess(ProbeResult()).ready.reason == "NoModels"


def test_verification_success_and_failure():
    ok = assess(ProbeResult(models_call=OK_MODELS,
                            verify_call=CallOutcome(status=200, latency_ms=5)))
    assert ok.ready.status == "True"
    bad = ProbeResult(models_call=OK_MODELS, verify_call=CallOutcome(status=200,
                                                                     shape_error="not chat"))
    assert assess(bad).ready.reason == "VerificationFailed"
    unauthorized = ProbeResult(models_call=CallOutcome(status=404), static_models=("a",),
                               verify_call=CallOutcome(status=401))
    assert assess(unauthorized).ready.reason == "Unauthorized"


def test_invalid_endpoint_is_permanent():
    a = assess(ProbeResult(endpoint_error="query strings are not allowed"))
    assert a.ready.reason == "InvalidEndpoint" and a.retry is Retry.PERMANENT


@pytest.mark.parametrize(("models_call", "worth"), [
    (None, True),  # discovery off: the test message is the only check
    (OK_MODELS, True),
    (CallOutcome(status=404), True),  # no /v1/models: the message checks the key
    (CallOutcome(status=500), True),
    (CallOutcome(status=401), False),
    (CallOutcome(status=403), False),
    (CallOutcome(failure=Reason.CONNECTION_REFUSED), False),
])
def test_the_test_message_is_not_sent_after_a_refused_key_or_no_connection(models_call, worth):
    assert worth_verifying(models_call) is worth


def test_a_skipped_test_message_is_not_checked_rather_than_disabled():
    skipped = ProbeResult(models_call=CallOutcome(status=401), verification=True)
    assert conds(skipped)["Verified"] == ("Unknown", "NotChecked")
    assert assess(skipped).ready.reason == "Unauthorized"
    off = ProbeResult(models_call=CallOutcome(status=401))
    assert conds(off)["Verified"] == ("Unknown", "VerificationDisabled")


def test_the_apis_are_chat_and_what_the_probes_found_offered():
    answers = ((Operation.COMPLETIONS, 400), (Operation.EMBEDDINGS, 501),
               (Operation.RESPONSES, 404), (Operation.MESSAGES, 422),
               (Operation.COUNT_TOKENS, None))
    a = assess(ProbeResult(models_call=OK_MODELS, api_answers=answers))
    assert a.apis == (Operation.CHAT, Operation.COMPLETIONS, Operation.MESSAGES,
                      Operation.COUNT_TOKENS)
    assert assess(ProbeResult(models_call=OK_MODELS)).apis == ()  # not probed: not known


def test_models_found_through_a_fallback_say_so():
    a = assess(ProbeResult(models_call=OK_MODELS, models_route="GET /api/tags"))
    assert a.ready.status == "True"
    md = next(c for c in a.conditions if c.type == "ModelsDiscovered")
    assert md.message == "2 models offered (2 discovered through GET /api/tags)"
    plain = next(c for c in assess(ProbeResult(models_call=OK_MODELS)).conditions
                 if c.type == "ModelsDiscovered")
    assert plain.message == "2 models offered (2 discovered)"
