"""Building the chain: canonical serialization, stable hashes, and what record() stores."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth import get_user_model
from django.http import HttpResponse
from django.test import RequestFactory

from audit.chain import GENESIS_HASH, canonical_json, compute_hash, format_timestamp
from audit.models import AuditEvent
from audit.service import record, verify_log
from vitamin.middleware import RequestIdMiddleware
from vitamin.request_context import reset_request_id, set_request_id

SAMPLE_RECORD = {
    "seq": 7,
    "timestamp": "2025-03-01T08:30:00.123456Z",
    "actor_type": "client",
    "actor_id": "fund-quant-app",
    "institution": "42",
    "action": "query.run",
    "target": "dataset:industry_indicators",
    "outcome": "success",
    "details": {"rows": 1000, "sql_bytes": 120, "名称": "淘金100", "ratio": 0.5},
    "ip": "203.0.113.9",
    "request_id": "req-00000001",
    "prev_hash": "ab" * 32,
}
# Written out by hand: sorted keys, no spaces, UTF-8 text kept as is.
SAMPLE_CANONICAL = (
    '{"action":"query.run","actor_id":"fund-quant-app","actor_type":"client",'
    '"details":{"ratio":0.5,"rows":1000,"sql_bytes":120,"名称":"淘金100"},'
    '"institution":"42","ip":"203.0.113.9","outcome":"success",'
    '"prev_hash":"' + "ab" * 32 + '","request_id":"req-00000001","seq":7,'
    '"target":"dataset:industry_indicators","timestamp":"2025-03-01T08:30:00.123456Z"}'
)


def test_canonical_serialization_is_sorted_compact_utf8_json():
    reordered = dict(reversed(list(SAMPLE_RECORD.items())))
    assert canonical_json(SAMPLE_RECORD) == SAMPLE_CANONICAL
    assert canonical_json(reordered) == SAMPLE_CANONICAL


def test_event_hash_is_sha256_of_the_canonical_form_and_never_changes():
    expected = hashlib.sha256(SAMPLE_CANONICAL.encode("utf-8")).hexdigest()
    assert compute_hash(SAMPLE_RECORD) == expected
    # Pinned: if this changes, every stored chain stops verifying.
    assert expected == "181355f093c92b2233f63555e1a5041e32963abfc99d59d56b4c76a1bc4a4d58"
    assert compute_hash({**SAMPLE_RECORD, "hash": "ignored"}) == expected
    assert compute_hash({**SAMPLE_RECORD, "target": "dataset:other"}) != expected


def test_timestamps_serialize_as_utc_with_microseconds():
    shanghai = datetime(2025, 3, 1, 16, 30, 0, 5, tzinfo=ZoneInfo("Asia/Shanghai"))
    assert format_timestamp(shanghai) == "2025-03-01T08:30:00.000005Z"
    with pytest.raises(ValueError, match="timezone-aware"):
        format_timestamp(datetime(2025, 3, 1))


def test_canonical_json_refuses_values_json_cannot_represent():
    with pytest.raises(ValueError):
        canonical_json({"score": float("nan")})
    with pytest.raises(TypeError):
        canonical_json({"when": datetime.now(UTC)})


@pytest.mark.django_db
def test_record_links_each_event_to_the_previous_one(make_chain):
    events = make_chain(5)
    assert [event.seq for event in events] == [1, 2, 3, 4, 5]
    assert events[0].prev_hash == GENESIS_HASH
    for previous, event in zip(events, events[1:], strict=False):
        assert event.prev_hash == previous.hash
        assert event.timestamp >= previous.timestamp
    assert len({event.hash for event in events}) == 5


@pytest.mark.django_db
def test_stored_events_rehash_to_their_stored_hash():
    # Values a database could rewrite (jsonb turns 1e+20 into an integer, drops -0.0's sign).
    details = {
        "big": 1e20,
        "tiny": 1.5e-7,
        "negative_zero": -0.0,
        "int": 2**70,
        "text": "中文\u0000",
        "nested": [{"b": 1, "a": None}],
    }
    event = record("dataset.publish", details=details, target="dataset:x", ip="::ffff:192.0.2.1")
    stored = AuditEvent.objects.get(seq=event.seq)
    assert stored.details == details
    assert stored.ip == "192.0.2.1"
    assert stored.to_record() == event.to_record()
    assert compute_hash(stored.to_record()) == stored.hash == event.hash


@pytest.mark.django_db
def test_record_defaults_to_a_system_actor_and_the_current_request_id():
    token = set_request_id("task-1234abcd")
    try:
        event = record("dataset.build", outcome="failure")
    finally:
        reset_request_id(token)
    assert (event.actor_type, event.actor_id, event.institution) == ("system", "", "")
    assert event.request_id == "task-1234abcd"
    assert event.outcome == "failure"
    assert event.details == {}


@pytest.mark.django_db
def test_record_with_a_request_takes_ip_request_id_and_user_from_it():
    olga = get_user_model().objects.create_user("olga")
    captured = {}

    def view(request):
        request.user = olga
        captured["event"] = record("subscription.approve", target="subscription:9", request=request)
        return HttpResponse()

    request = RequestFactory().post(
        "/", REMOTE_ADDR="198.51.100.7", HTTP_X_FORWARDED_FOR="1.2.3.4", HTTP_X_REQUEST_ID="req-from-client-01"
    )
    RequestIdMiddleware(view)(request)

    event = captured["event"]
    assert (event.actor_type, event.actor_id) == ("user", "olga")
    assert event.ip == "198.51.100.7"  # X-Forwarded-For is not trusted from an unlisted address
    assert event.request_id == "req-from-client-01"
    assert AuditEvent.objects.get(seq=event.seq).actor_id == "olga"


class _OAuthClient:
    client_id = "bank-risk-system"
    institution_id = 17


@pytest.mark.django_db
def test_record_with_an_oauth_request_names_the_client_and_its_institution():
    request = RequestFactory().get("/", REMOTE_ADDR="192.0.2.10")
    request.user = get_user_model().objects.create_user("dave")
    request.auth_client = _OAuthClient()
    request.request_id = "req-oauth-0001"

    event = record("token.issue", request=request)

    assert (event.actor_type, event.actor_id, event.institution) == ("client", "bank-risk-system", "17")
    assert event.request_id == "req-oauth-0001"


@pytest.mark.django_db
def test_explicit_arguments_win_over_the_request():
    request = RequestFactory().get("/", REMOTE_ADDR="192.0.2.10")
    request.auth_client = _OAuthClient()
    request.request_id = "req-oauth-0001"

    event = record(
        "lookup.run",
        request=request,
        actor_type="system",
        actor_id="scheduler",
        ip="192.0.2.99",
        request_id="req-own-000001",
    )

    assert (event.actor_type, event.actor_id, event.institution) == ("system", "scheduler", "")
    assert (event.ip, event.request_id) == ("192.0.2.99", "req-own-000001")


@pytest.mark.django_db
def test_anonymous_request_is_recorded_as_system_with_its_ip():
    request = RequestFactory().post("/", REMOTE_ADDR="192.0.2.44")
    request.user = None

    event = record("auth.login", outcome="denied", request=request, details={"username": "mallory"})

    assert (event.actor_type, event.actor_id, event.ip) == ("system", "", "192.0.2.44")


@pytest.mark.django_db
@pytest.mark.parametrize(
    "bad_arguments",
    [
        {"details": {"when": object()}},
        {"details": {"score": float("inf")}},
        {"actor_type": "robot"},
        {"ip": "not-an-ip"},
        {"action": ""},
    ],
    ids=["unserializable-details", "infinite-number", "unknown-actor-type", "bad-ip", "no-action"],
)
def test_invalid_events_are_refused_and_nothing_is_stored(bad_arguments):
    with pytest.raises((TypeError, ValueError)):
        record(**{"action": "query.run", **bad_arguments})
    assert not AuditEvent.objects.exists()


@pytest.mark.django_db
def test_overlong_strings_are_stored_truncated_with_the_originals_hash():
    target, client_id, sql = "dataset:" + "t" * 5000, "c" * 300, "S" * 200_000
    event = record(
        "query.run",
        actor_type="client",
        actor_id=client_id,
        institution="i" * 256,
        target=target,
        request_id="r" * 65,
        details={"sql": sql, "tables": ["ok", "n" * 100_001], "k" * 100_001: 1},
    )
    stored = AuditEvent.objects.get()
    assert stored.to_record() == event.to_record() and verify_log().ok
    for field in ("actor_id", "institution", "target", "request_id"):
        assert len(getattr(stored, field)) == AuditEvent._meta.get_field(field).max_length
    assert stored.target.startswith("dataset:ttt") and stored.target.endswith("…")
    assert len(stored.details["sql"]) == 100_000 and stored.details["tables"][0] == "ok"
    truncated = stored.details["truncated_fields"]
    assert truncated["target"] == {"chars": 5008, "sha256": hashlib.sha256(target.encode()).hexdigest()}
    assert truncated["actor_id"]["sha256"] == hashlib.sha256(client_id.encode()).hexdigest()
    assert truncated["details.sql"] == {"chars": 200_000, "sha256": hashlib.sha256(sql.encode()).hexdigest()}
    assert set(truncated) == {
        "actor_id",
        "institution",
        "target",
        "request_id",
        "details.sql",
        "details.tables.1",
        "details.<key>",
    }
