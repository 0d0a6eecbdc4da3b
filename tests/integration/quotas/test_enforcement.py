"""ChatQuotas applied with kubectl govern a real relay process within seconds, refusals are what
the ``openai`` SDK expects, every governed answer carries the rate-limit headers, and what is
charged is the usage the model reported (streams included, without the caller seeing a usage
chunk it did not ask for)."""

from __future__ import annotations

import json
import time

import httpx
import openai
import pytest
from tests.conftest import RELAY_AUDIENCE
from tests.reliability.harness import wait_for

from chatprovider.domain.apis import Operation
from chatprovider.domain.quota.demand import ReservationPolicy, demand_of

from .conftest import QuotaSetup, sse_events, unique, wait_for_room_in_minute

pytestmark = pytest.mark.integration

HEADERS = ("x-ratelimit-limit-requests", "x-ratelimit-remaining-requests",
           "x-ratelimit-reset-requests", "x-ratelimit-limit-tokens",
           "x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens")


def _sdk(relay, api_key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{relay.url}/v1", api_key=api_key, max_retries=0, timeout=60)


def test_apply_update_and_delete_govern_the_relay_within_seconds(
        quota_setup: QuotaSetup, kubectl, mint_token) -> None:
    s = quota_setup
    ns = s.ns
    # A real ServiceAccount caller (kubernetes auth), allowed to use the provider.
    token = mint_token(ns, "app", audience=RELAY_AUDIENCE)
    kubectl("apply", "-n", ns, "-f", "-", input=json.dumps({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "use-llm"},
        "rules": [{"apiGroups": ["ai.chatprovider.dev"], "resources": ["chatproviders"],
                   "verbs": ["use"]}]}))
    kubectl("create", "rolebinding", "use-llm", "-n", ns, "--role=use-llm",
            f"--serviceaccount={ns}:app")
    relay = s.relay(auth="kubernetes", wait_ready=False)
    relay.wait_ready()
    wait_for(lambda: s.chat(relay, token=token, max_tokens=1).status_code == 200, timeout=30,
             what="the relay to serve the ServiceAccount")
    answer = s.chat(relay, token=token, max_tokens=1)
    assert not [h for h in HEADERS if h in answer.headers]  # no quota, no headers

    subjects = [{"kind": "ServiceAccount", "namespace": ns, "name": "app"}]
    started = time.monotonic()
    s.apply_quota("team-app", {"requestsPerMinute": 1000, "tokensPerDay": 1_000_000},
                  subjects=subjects, scope="PerSubject")
    governed = wait_for(lambda: (r := s.chat(relay, token=token, max_tokens=1)).headers.get(
        "x-ratelimit-limit-requests") == "1000" and r, timeout=10, interval=0.1,
        what="the applied quota to govern")
    applied_after = time.monotonic() - started
    assert governed.status_code == 200
    assert governed.headers["x-ratelimit-limit-tokens"] == "1000000"

    started = time.monotonic()
    s.apply_quota("team-app", {"requestsPerMinute": 0}, subjects=subjects, scope="PerSubject")
    refused = wait_for(lambda: (r := s.chat(relay, token=token, max_tokens=1)).status_code == 429
                       and r, timeout=10, interval=0.1, what="the updated quota to refuse")
    updated_after = time.monotonic() - started
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert "quota" in refused.json()["error"]["message"]

    started = time.monotonic()
    s.delete_quota("team-app")
    free = wait_for(lambda: (r := s.chat(relay, token=token, max_tokens=1)).status_code == 200
                    and r, timeout=10, interval=0.1, what="the deleted quota to stop governing")
    deleted_after = time.monotonic() - started
    assert not [h for h in HEADERS if h in free.headers]
    print(f"\n[quotas] governs after apply {applied_after:.2f}s, update {updated_after:.2f}s,"
          f" delete {deleted_after:.2f}s")


def test_refusals_are_openai_rate_limit_errors_and_every_answer_has_the_headers(
        quota_setup: QuotaSetup) -> None:
    s = quota_setup
    relay = s.relay()
    client = _sdk(relay)
    name = unique("rpm")
    s.apply_quota(name, {"requestsPerMinute": 2})
    wait_for_room_in_minute(20)
    wait_for(lambda: "x-ratelimit-limit-requests" in s.chat(relay, max_tokens=1).headers,
             timeout=10, interval=0.1, what="the quota to govern")  # the first of two

    ok = client.chat.completions.with_raw_response.create(
        model=s.model, max_tokens=2, messages=[{"role": "user", "content": "Hi"}])
    assert ok.http_response.status_code == 200
    assert ok.headers["x-ratelimit-limit-requests"] == "2"
    assert ok.headers["x-ratelimit-remaining-requests"] == "0"
    assert ok.headers["x-ratelimit-reset-requests"].endswith("s")

    with pytest.raises(openai.RateLimitError) as refused:
        client.chat.completions.create(model=s.model, max_tokens=2,
                                       messages=[{"role": "user", "content": "Hi"}])
    error = refused.value
    assert error.status_code == 429
    assert error.code == "rate_limit_exceeded"
    assert isinstance(error.body, dict) and error.body["type"] == "rate_limit_error"
    assert f"{s.ns}/{name}" in error.body["message"]
    headers = error.response.headers
    assert 1 <= int(headers["retry-after"]) <= 60
    assert int(headers["retry-after-ms"]) > 0
    assert headers["x-ratelimit-limit-requests"] == "2"
    assert headers["x-ratelimit-remaining-requests"] == "0"

    # A day budget that is spent: insufficient_quota, until the day turns.
    budget = unique("day")
    s.apply_quota(budget, {"tokensPerDay": 60})
    s.delete_quota(name)
    used = 0
    first = wait_for(lambda: (r := s.chat(relay, max_tokens=8)).headers.get(
        "x-ratelimit-limit-tokens") == "60" and r, timeout=10, interval=0.1,
        what="the budget alone to govern")
    assert first.status_code == 200 and "x-ratelimit-limit-requests" not in first.headers
    used += first.json()["usage"]["total_tokens"]
    with pytest.raises(openai.RateLimitError) as spent:
        for _ in range(10):  # each reserves 11 tokens and is charged what it used
            answer = client.chat.completions.create(
                model=s.model, max_tokens=8, messages=[{"role": "user", "content": "Say hi."}])
            assert answer.usage is not None
            used += answer.usage.total_tokens
    assert spent.value.code == "insufficient_quota"
    assert int(spent.value.response.headers["retry-after"]) > 60  # the day's end, not a minute
    assert s.tokens_charged(budget) == used  # what the model reported, request by request

    # A request that can never fit: refused at once, saying so, without Retry-After.
    with pytest.raises(openai.RateLimitError) as too_large:
        client.chat.completions.create(model=s.model, max_tokens=500,
                                       messages=[{"role": "user", "content": "Hi"}])
    assert "Request too large" in str(too_large.value.body)
    assert "retry-after" not in too_large.value.response.headers


def test_what_a_request_without_a_maximum_reserves_is_the_relays_setting(
        quota_setup: QuotaSetup) -> None:
    """Under a 500-token day budget, a chat that sets no maximum reserves 1,024 answer tokens by
    default and is refused; a relay told ``--relay-quota-completion-tokens=16`` (the chart's
    ``quotas.reservation.completionTokens``) admits it, reserving 16. llama-server's own
    ``n_predict`` keeps the answer short, and the relay does not read it as a maximum."""
    s = quota_setup
    default, small = s.relay(), s.relay("--relay-quota-completion-tokens=16")
    name = unique("reserve")
    s.apply_quota(name, {"tokensPerDay": 500})
    for relay in (default, small):
        wait_for(lambda r=relay: s.chat(r, max_tokens=1).headers.get(
            "x-ratelimit-limit-tokens") == "500", timeout=10, interval=0.1,
            what="the quota to govern both relays")
    body = {"model": s.model, "n_predict": 4,
            "messages": [{"role": "user", "content": "Say hi."}]}

    refused = httpx.post(f"{default.url}/v1/chat/completions", json=body, timeout=60)
    assert refused.status_code == 429, refused.text
    assert refused.json()["error"]["code"] == "insufficient_quota"
    left = int(refused.headers["x-ratelimit-remaining-tokens"])
    assert left < demand_of(Operation.CHAT, body).total  # 1,024 answer tokens do not fit

    admitted = httpx.post(f"{small.url}/v1/chat/completions", json=body, timeout=60)
    assert admitted.status_code == 200, admitted.text
    reserved = demand_of(Operation.CHAT, body, ReservationPolicy(default_completion_tokens=16))
    assert reserved.completion == 16
    assert int(admitted.headers["x-ratelimit-remaining-tokens"]) == left - reserved.total
    assert admitted.json()["usage"]["completion_tokens"] <= 4


def test_the_model_reported_usage_is_charged_and_streams_hide_what_was_not_asked_for(
        quota_setup: QuotaSetup) -> None:
    s = quota_setup
    relay = s.relay()
    name = unique("usage")
    s.apply_quota(name, {"tokensPerDay": 100_000})
    wait_for(lambda: "x-ratelimit-limit-tokens" in s.chat(relay, max_tokens=1).headers,
             timeout=10, interval=0.1, what="the quota to govern")
    before = s.tokens_charged(name)

    # A plain answer: charged its usage (settled before the answer reaches the caller).
    answer = s.chat(relay, max_tokens=6)
    usage = answer.json()["usage"]
    assert s.tokens_charged(name) - before == usage["prompt_tokens"] + usage["completion_tokens"]
    reservation = demand_of(Operation.CHAT, s.body(max_tokens=6)).total
    assert int(answer.headers["x-ratelimit-remaining-tokens"]) == 100_000 - before - reservation

    # A stream whose caller did not ask for usage: the relay asked, the caller sees none.
    before = s.tokens_charged(name)
    stream = s.body(max_tokens=6, stream=True, temperature=0)
    with httpx.stream("POST", f"{relay.url}/v1/chat/completions", timeout=60,
                      json=stream) as streamed:
        assert streamed.headers["x-ratelimit-limit-tokens"] == "100000"
        text = streamed.read().decode()
    events = sse_events(text)
    assert events[-1] == "[DONE]"
    assert all("usage" not in e and e.get("choices") != [] for e in events[:-1])
    reserved = before + demand_of(Operation.CHAT, stream).total
    charged = wait_for(lambda: (c := s.tokens_charged(name)) != reserved and c, timeout=10,
                       what="the stream's settlement") - before
    # What the model reported: the same request (greedy, so the same answer) asked for it.
    with httpx.stream("POST", f"{relay.url}/v1/chat/completions", timeout=60,
                      json={**stream, "stream_options": {"include_usage": True}}) as asked:
        shown = sse_events(asked.read().decode())
    reported = [e["usage"] for e in shown[:-1] if e.get("usage")]
    assert len(reported) == 1 and shown[-2]["choices"] == []  # asked for: handed on
    assert charged == reported[0]["prompt_tokens"] + reported[0]["completion_tokens"]
    # That stream is settled after its last event reached us: wait for its charge to land, so
    # that it is not counted against what follows.
    both = before + 2 * charged
    wait_for(lambda: s.tokens_charged(name) == both, timeout=10,
             what="the second stream's settlement")
    before = both

    # An upstream's error answer under the quota carries the headers too, and no token is
    # charged for it (the request counts).
    too_long = s.chat(relay, max_tokens=3, content="x" * 20_000)  # over llama's 2,048 context
    assert too_long.status_code == 400, too_long.text
    assert too_long.headers["x-ratelimit-limit-tokens"] == "100000"
    assert s.tokens_charged(name) == before

    # The Anthropic Messages route: its own envelope for a refusal.
    s.apply_quota(name, {"tokensPerDay": 100_000, "requestsPerMinute": 0})
    refused = wait_for(lambda: (r := httpx.post(
        f"{relay.url}/v1/messages", timeout=60,
        json={"model": s.model, "max_tokens": 4, "messages": [{"role": "user",
                                                               "content": "Hi"}]})
    ).status_code == 429 and r, timeout=10, interval=0.1, what="the update")
    assert refused.json()["type"] == "error"
    assert refused.json()["error"]["type"] == "rate_limit_error"
    assert "x-ratelimit-limit-requests" in refused.headers


@pytest.mark.parametrize(("path", "operation", "body"), [
    ("/v1/responses", Operation.RESPONSES, {"input": "Say hello.", "max_output_tokens": 6}),
    ("/v1/messages", Operation.MESSAGES,
     {"messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 6}),
])
def test_responses_and_messages_streams_are_charged_the_usage_of_their_last_events(
        quota_setup: QuotaSetup, path: str, operation: Operation, body: dict) -> None:
    s = quota_setup
    relay = s.relay()
    name = unique("events")
    s.apply_quota(name, {"tokensPerDay": 100_000})
    wait_for(lambda: "x-ratelimit-limit-tokens" in s.chat(relay, max_tokens=1).headers,
             timeout=10, interval=0.1, what="the quota to govern")
    before = s.tokens_charged(name)
    request = {"model": s.model, "stream": True, "temperature": 0, **body}
    with httpx.stream("POST", f"{relay.url}{path}", json=request, timeout=60) as streamed:
        assert streamed.status_code == 200
        assert streamed.headers["x-ratelimit-limit-tokens"] == "100000"
        events = sse_events(streamed.read().decode())
    reserved = before + demand_of(operation, request).total
    charged = wait_for(lambda: (c := s.tokens_charged(name)) != reserved and c, timeout=10,
                       what="the stream's settlement") - before
    if operation is Operation.RESPONSES:
        [done] = [e for e in events if e.get("type") == "response.completed"]
        usage = done["response"]["usage"]
        reported = usage["input_tokens"] + usage["output_tokens"]
    else:
        [start] = [e for e in events if e.get("type") == "message_start"]
        [delta] = [e for e in events if e.get("type") == "message_delta"]
        # Anthropic's input_tokens leaves out the prompt cache: the whole prompt is charged
        prompt = start["message"]["usage"]
        reported = (prompt["input_tokens"] + prompt.get("cache_read_input_tokens", 0)
                    + prompt.get("cache_creation_input_tokens", 0)
                    + delta["usage"]["output_tokens"])
    assert charged == reported


def test_a_concurrency_limit_refuses_while_a_stream_is_open_and_frees_its_slot_after(
        quota_setup: QuotaSetup) -> None:
    s = quota_setup
    relay = s.relay()
    name = unique("inflight")
    # (a budget beside it, whose headers say when the quota governs: a concurrency limit alone
    # sends no rate-limit headers)
    s.apply_quota(name, {"concurrentRequests": 1, "tokensPerDay": 1_000_000})
    wait_for(lambda: "x-ratelimit-limit-tokens" in s.chat(relay, max_tokens=1).headers,
             timeout=10, interval=0.1, what="the quota to govern")
    client = _sdk(relay)
    with httpx.stream("POST", f"{relay.url}/v1/chat/completions", timeout=60,
                      json=s.body(max_tokens=400, stream=True,
                                  content="Write a long story about a lighthouse.")) as streamed:
        assert streamed.status_code == 200
        lines = streamed.iter_lines()  # (kept: a generator collected closes the response)
        next(lines)  # the stream holds the one slot
        with pytest.raises(openai.RateLimitError) as busy:
            client.chat.completions.create(model=s.model, max_tokens=1,
                                           messages=[{"role": "user", "content": "Hi"}])
        assert busy.value.code == "rate_limit_exceeded"
        assert "in flight" in str(busy.value.body)
        assert busy.value.response.headers["retry-after"] == "1"
        lines.close()
    # the stream ended (the client closed it): its lease is released
    wait_for(lambda: s.chat(relay, max_tokens=1).status_code == 200, timeout=10,
             what="the slot to be free again")


def test_a_caller_one_request_at_a_time_across_relays_always_finds_its_slot_free(
        quota_setup: QuotaSetup) -> None:
    """A relay answers once its settlement is on its way to Redis, before Redis confirms it;
    the next request of the same caller, on the other relay, still finds the slot of a
    concurrency limit of 1 released and its tokens charged."""
    s = quota_setup
    relays = [s.relay(), s.relay()]
    name = unique("sequential")
    s.apply_quota(name, {"concurrentRequests": 1, "tokensPerDay": 1_000_000})
    for relay in relays:
        wait_for(lambda r=relay: "x-ratelimit-limit-tokens" in s.chat(r, max_tokens=1).headers,
                 timeout=10, interval=0.1, what="the quota to govern")
    before = s.tokens_charged(name)
    used = 0
    for n in range(30):
        answer = s.chat(relays[n % 2], max_tokens=1)
        assert answer.status_code == 200, (n, answer.text)
        used += answer.json()["usage"]["total_tokens"]
        assert s.tokens_charged(name) - before == used  # settled: the usage, not the reservation
