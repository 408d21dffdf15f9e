"""verify_audit: passes an intact chain, and names the first bad seq after each kind of tampering."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from audit import triggers
from audit.chain import GENESIS_HASH, HASHED_FIELDS, compute_hash, verify_chain
from audit.models import AuditEvent


def verify(*arguments: str) -> dict:
    """Run verify_audit --json; return its result, with `error` holding the CommandError message if it failed."""
    stdout = StringIO()
    try:
        call_command("verify_audit", "--json", *arguments, stdout=stdout, stderr=StringIO())
    except CommandError as exc:
        assert exc.returncode == 1
        return {**json.loads(stdout.getvalue()), "error": str(exc)}
    return json.loads(stdout.getvalue())


@pytest.mark.django_db
def test_intact_chain_passes_with_a_summary_and_an_anchor(make_chain):
    events = make_chain(6)
    stdout = StringIO()

    call_command("verify_audit", stdout=stdout)

    assert "intact: 6 events" in stdout.getvalue()
    assert f"6:{events[-1].hash}" in stdout.getvalue()
    result = verify()
    assert result["ok"] is True
    assert (result["events_checked"], result["head"]) == (6, f"6:{events[-1].hash}")
    assert result["triggers_installed"] is True


@pytest.mark.django_db
def test_empty_log_is_intact():
    stdout = StringIO()
    call_command("verify_audit", stdout=stdout)
    assert "empty" in stdout.getvalue()
    result = verify()
    assert (result["ok"], result["events_checked"], result["head_hash"]) == (True, 0, GENESIS_HASH)


@pytest.mark.django_db
def test_edited_event_is_named(make_chain, tamper):
    make_chain(6)
    tamper.execute("UPDATE audit_auditevent SET target = 'dataset:other' WHERE seq = 4")

    result = verify()

    assert (result["ok"], result["bad_seq"], result["problem"]) == (False, 4, "hash_mismatch")
    assert "seq 4" in result["error"] and "edited" in result["error"]
    assert result["events_checked"] == 3


@pytest.mark.django_db
def test_edited_and_rehashed_event_is_caught_by_the_next_link(make_chain, tamper):
    make_chain(6)
    tamper.execute("UPDATE audit_auditevent SET outcome = 'success' WHERE seq = 5")
    tamper.rehash(5)

    result = verify()

    assert (result["bad_seq"], result["problem"]) == (6, "prev_hash_mismatch")


@pytest.mark.django_db
@pytest.mark.parametrize("deleted_seq", [1, 3])
def test_deleted_event_is_named(make_chain, tamper, deleted_seq):
    make_chain(6)
    tamper.execute("DELETE FROM audit_auditevent WHERE seq = %s", [deleted_seq])

    result = verify()

    assert (result["ok"], result["bad_seq"], result["problem"]) == (False, deleted_seq, "seq_gap")
    assert "deleted" in result["error"]


@pytest.mark.django_db
def test_inserted_event_is_named(make_chain, tamper):
    events = make_chain(6)
    # Make room after seq 3 (two steps, so the primary key never collides), then forge a
    # self-consistent event there. Its prev_hash cannot be seq 3's hash: seq 4 already holds that.
    tamper.execute("UPDATE audit_auditevent SET seq = -seq WHERE seq > 3")
    tamper.execute("UPDATE audit_auditevent SET seq = 1 - seq WHERE seq < 0")
    forged = {**events[2].to_record(), "seq": 4, "action": "grant.create", "prev_hash": "1" * 64}
    forged["hash"] = compute_hash(forged)
    tamper.execute(
        "INSERT INTO audit_auditevent (seq, timestamp, actor_type, actor_id, institution, action, target, outcome,"
        " details, ip, request_id, prev_hash, hash) SELECT %s, timestamp, actor_type, actor_id, institution, %s,"
        " target, outcome, details, ip, request_id, %s, %s FROM audit_auditevent WHERE seq = 3",
        [4, "grant.create", forged["prev_hash"], forged["hash"]],
    )
    assert AuditEvent.objects.count() == 7

    result = verify()

    assert (result["bad_seq"], result["problem"]) == (4, "prev_hash_mismatch")
    assert "inserted or reordered" in result["error"]


def swap(tamper, first: int, second: int) -> None:
    tamper.execute("UPDATE audit_auditevent SET seq = -1 WHERE seq = %s", [first])
    tamper.execute("UPDATE audit_auditevent SET seq = %s WHERE seq = %s", [first, second])
    tamper.execute("UPDATE audit_auditevent SET seq = %s WHERE seq = -1", [second])


@pytest.mark.django_db
def test_reordered_events_are_named(make_chain, tamper):
    make_chain(6)
    swap(tamper, 3, 4)
    tamper.rehash(3)
    tamper.rehash(4)

    result = verify()

    assert (result["bad_seq"], result["problem"]) == (3, "prev_hash_mismatch")


@pytest.mark.django_db
def test_reordered_events_without_rehashing_are_named(make_chain, tamper):
    make_chain(6)
    swap(tamper, 2, 5)

    result = verify()

    assert (result["bad_seq"], result["problem"]) == (2, "hash_mismatch")


@pytest.mark.django_db
def test_deleting_the_newest_events_needs_an_anchor(make_chain, tamper):
    events = make_chain(6)
    anchor = verify()["head"]
    tamper.execute("DELETE FROM audit_auditevent WHERE seq > 4")

    # The documented limit: what is left is a perfectly valid, shorter chain.
    assert verify()["ok"] is True
    result = verify("--expect-head", anchor)

    assert (result["ok"], result["bad_seq"], result["problem"]) == (False, 5, "truncated")
    assert anchor == f"6:{events[-1].hash}"


@pytest.mark.django_db
def test_anchor_catches_a_rewritten_tail(make_chain, tamper):
    make_chain(5)
    anchor = verify()["head"]
    # A forger who edits seq 3 and recomputes every later hash leaves a valid chain behind...
    tamper.execute("UPDATE audit_auditevent SET target = 'dataset:forged' WHERE seq = 3")
    for seq in (3, 4, 5):
        if seq > 3:
            previous = AuditEvent.objects.get(seq=seq - 1).hash
            tamper.execute("UPDATE audit_auditevent SET prev_hash = %s WHERE seq = %s", [previous, seq])
        tamper.rehash(seq)
    assert verify()["ok"] is True

    # ...but not one that matches an anchor taken before.
    result = verify("--expect-head", anchor)
    assert (result["bad_seq"], result["problem"]) == (5, "anchor_mismatch")
    assert verify("--expect-head", f"2:{AuditEvent.objects.get(seq=2).hash}")["ok"] is True


@pytest.mark.django_db
def test_text_output_and_exit_status_when_broken(make_chain, tamper):
    make_chain(3)
    tamper.execute("DELETE FROM audit_auditevent WHERE seq = 2")
    stdout = StringIO()

    with pytest.raises(CommandError, match=r"broken at seq 2 \(seq_gap\)") as failure:
        call_command("verify_audit", stdout=stdout)

    assert failure.value.returncode == 1
    assert "BROKEN at seq 2" in stdout.getvalue()


@pytest.mark.django_db
def test_missing_triggers_are_reported(make_chain, tamper):
    make_chain(2)
    triggers.drop(connection)  # rolled back with the test's transaction
    stderr = StringIO()
    call_command("verify_audit", stdout=StringIO(), stderr=stderr)
    assert "triggers are missing" in stderr.getvalue()
    assert verify()["triggers_installed"] is False


@pytest.mark.django_db
@pytest.mark.parametrize("anchor", ["12", "0:" + "a" * 64, "3:xyz", "3:" + "g" * 64])
def test_malformed_anchor_is_refused(anchor):
    with pytest.raises(CommandError, match="--expect-head"):
        call_command("verify_audit", "--expect-head", anchor, stdout=StringIO())


@pytest.mark.django_db
def test_an_export_file_can_be_verified_on_its_own(make_chain, tmp_path: Path):
    make_chain(6)
    export = tmp_path / "audit.jsonl"
    call_command("export_audit", "--output", str(export), stdout=StringIO())
    events = AuditEvent.objects.order_by("-seq")
    since = events[3].timestamp.isoformat()
    tail = tmp_path / "tail.jsonl"
    call_command("export_audit", "--since", since, "--output", str(tail), stdout=StringIO())

    assert verify("--input", str(export))["events_checked"] == 6
    assert verify("--input", str(tail))["ok"] is True
    head = f"6:{events.first().hash}"
    assert verify("--input", str(tail), "--expect-head", head)["ok"] is True
    first = f"1:{events.last().hash}"
    assert verify("--input", str(tail), "--expect-head", first)["problem"] == "anchor_not_covered"

    lines = export.read_text(encoding="utf-8").splitlines()
    record = json.loads(lines[4])
    record["actor_id"] = "someone-else"
    lines[4] = json.dumps(record)
    export.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = verify("--input", str(export))
    assert (result["bad_seq"], result["problem"]) == (5, "hash_mismatch")

    export.write_text("\n".join(lines[:2] + lines[3:]) + "\n", encoding="utf-8")
    assert verify("--input", str(export))["problem"] == "seq_gap"


def test_an_unreadable_export_file_is_reported(tmp_path: Path):
    not_audit = tmp_path / "other.jsonl"
    not_audit.write_text('{"seq": 1}\n', encoding="utf-8")
    with pytest.raises(CommandError, match="not an audit record"):
        call_command("verify_audit", "--input", str(not_audit), stdout=StringIO())
    with pytest.raises(CommandError, match="cannot read"):
        call_command("verify_audit", "--input", str(tmp_path / "missing.jsonl"), stdout=StringIO())


def test_records_out_of_order_are_named():
    chained, previous = [], GENESIS_HASH
    for seq in (1, 2, 3):
        record = {**dict.fromkeys(HASHED_FIELDS, ""), "details": {}, "seq": seq, "prev_hash": previous}
        record["hash"] = previous = compute_hash(record)
        chained.append(record)

    assert verify_chain(chained).ok
    result = verify_chain([chained[0], chained[2], chained[1]])
    assert (result.bad_seq, result.problem) == (2, "seq_gap")
    result = verify_chain([chained[0], chained[1], chained[0]])
    assert (result.bad_seq, result.problem) == (1, "seq_out_of_order")
