"""Device sync through real ingress, scheduler and `sync` worker processes on real PostgreSQL,
RabbitMQ and S3 (SeaweedFS). Devices are scripted HTTP clients (tests/support/sync_client.py)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, text

from shared.db.engine import session_scope
from shared.db.models import Contact, SyncConflict, SyncRegisters
from shared.db.repos import sync as sync_repo
from shared.embedded import EmbeddedS3
from shared.jobs.payloads.sync import DeviceSyncPayload
from shared.storage.buckets import Bucket, bucket_name
from tests.support.stack import Stack
from tests.support.sync_client import (
    CURSOR_KEYS,
    conflicts,
    ident,
    new_device,
    new_user,
    server_view,
    start_sync_stack,
)
from workers.sync import service
from workers.sync.cursor import Cursor
from workers.sync.prune import PruneRules, prune_once
from workers.sync.service import SyncPolicy

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def sync_stack(tmp_path_factory: pytest.TempPathFactory, s3_server: EmbeddedS3) -> Iterator[Stack]:
    stack = start_sync_stack(tmp_path_factory.mktemp("logs"), s3_server)
    yield stack
    stack.close()


def test_two_devices_converge_after_offline_edits(sync_stack: Stack) -> None:
    user = new_user(sync_stack)
    phone, laptop = new_device(sync_stack, user, "phone"), new_device(sync_stack, user, "laptop")
    ada, task, doomed = ident(), ident(), ident()
    phone.edit("contact", ada, name="Ada", email="ada@example.com")
    phone.edit("task", task, title="Write docs")
    phone.edit("contact", doomed, name="Temp")
    phone.sync()
    laptop.sync()
    assert laptop.visible() == phone.visible() == server_view(sync_stack, user)

    # Both go offline and edit: same field (conflict), different fields (both kept), a delete.
    phone.edit("contact", ada, phone="+47 1234")
    phone.edit("task", task, status="done")
    laptop.edit("contact", ada, email="ada@lovelace.org")
    laptop.delete("contact", doomed)
    laptop.edit("setting", "theme", value={"mode": "dark"})
    phone.edit("task", task, title="Write the docs")  # later than the laptop's: wins
    laptop.edit("task", task, title="Write docs today")
    laptop.sync()
    phone.sync()
    laptop.sync()

    expected = server_view(sync_stack, user)
    assert phone.visible() == laptop.visible() == expected
    assert expected[("contact", ada)]["phone"] == "+47 1234"
    assert expected[("contact", ada)]["email"] == "ada@lovelace.org"
    assert expected[("task", task)] == {
        "title": "Write docs today",
        "notes": None,
        "status": "done",
        "due_at": None,
    }
    assert ("contact", doomed) not in expected
    lost = conflicts(sync_stack, user)
    assert [(c["type"], c["field"], c["lost_value"]) for c in lost] == [
        ("task", "title", "Write the docs")
    ]
    assert lost[0]["lost_node"] == phone.device_id and lost[0]["winner_node"] == laptop.device_id
    with session_scope(sync_stack.sessions) as session:
        done = session.execute(text("SELECT completed_at FROM tasks WHERE id = :i"), {"i": task})
        assert done.scalar_one() is not None


def test_server_side_edits_reach_devices_with_server_timestamps(sync_stack: Stack) -> None:
    user = new_user(sync_stack)
    phone, tablet = new_device(sync_stack, user), new_device(sync_stack, user, "tablet")
    ada, made_by_server = ident(), uuid.uuid4()
    phone.edit("contact", ada, name="Ada")
    phone.sync()
    with session_scope(sync_stack.sessions) as session:
        session.execute(
            text("UPDATE contacts SET company = 'Analytical' WHERE id = :i"), {"i": ada}
        )
        session.add(Contact(id=made_by_server, owner_id=uuid.UUID(user), name="From import"))
    phone.sync()
    tablet.sync()
    assert phone.visible()[("contact", ada)]["company"] == "Analytical"
    assert phone.visible()[("contact", str(made_by_server))]["name"] == "From import"
    assert phone.replica[("contact", ada)].fields["company"][1].node == "server"
    assert phone.visible() == tablet.visible() == server_view(sync_stack, user)
    with session_scope(sync_stack.sessions) as session:  # a server-side delete, then a restore
        session.execute(text("UPDATE contacts SET deleted_at = now() WHERE id = :i"), {"i": ada})
    phone.sync()
    assert ("contact", ada) not in phone.visible()
    with session_scope(sync_stack.sessions) as session:
        session.execute(text("UPDATE contacts SET deleted_at = NULL WHERE id = :i"), {"i": ada})
    phone.sync()
    assert phone.visible()[("contact", ada)]["name"] == "Ada"


def test_wrong_secret_revoked_and_foreign_devices_cannot_sync(sync_stack: Stack) -> None:
    user, other = new_user(sync_stack), new_user(sync_stack)
    phone, intruder = new_device(sync_stack, user), new_device(sync_stack, other)
    body = {"batch_id": ident(), "changes": []}
    wrong = sync_stack.client.post(
        f"/v1/devices/{phone.device_id}/sync", json=body, headers={"Authorization": "Device nope"}
    )
    assert (wrong.status_code, wrong.json()["code"]) == (401, "unauthorized")
    foreign = sync_stack.client.post(  # another user's device secret on this device's id
        f"/v1/devices/{phone.device_id}/sync", json=body, headers=intruder.headers
    )
    assert foreign.status_code == 401
    missing = sync_stack.client.post(
        f"/v1/devices/{ident()}/sync", json=body, headers=phone.headers
    )
    assert missing.status_code == 401

    # The other user's device cannot touch this user's rows, even knowing their ids.
    ada = ident()
    phone.edit("contact", ada, name="Ada")
    phone.sync()
    intruder.edit("contact", ada, name="Mallory")
    intruder.delete("contact", ada)
    result = intruder.sync()
    assert [r["code"] for r in result["rejected"]] == ["unknown_entity", "unknown_entity"]
    assert server_view(sync_stack, user)[("contact", ada)]["name"] == "Ada"

    revoke = sync_stack.client.delete(
        f"/v1/devices/{phone.device_id}", headers=sync_stack.headers()
    )
    assert revoke.status_code == 200 and revoke.json()["revoked_at"]
    refused = sync_stack.client.post(
        f"/v1/devices/{phone.device_id}/sync", json=body, headers=phone.headers
    )
    assert (refused.status_code, refused.json()["code"]) == (403, "device_revoked")


def test_revoked_while_queued_and_wrong_user_jobs_fail_with_reasons(sync_stack: Stack) -> None:
    user, other = new_user(sync_stack), new_user(sync_stack)
    phone = new_device(sync_stack, user)
    payload = {"device_id": phone.device_id, "batch_id": ident()}
    job = sync_stack.submit_internal("device.sync", payload, user_id=other)
    done = sync_stack.wait_state(job["id"])
    assert (done.state, done.error_code) == ("failed", "device_not_found")
    job = sync_stack.submit_internal("device.sync", payload, user_id=user)  # nothing staged
    done = sync_stack.wait_state(job["id"])
    assert (done.state, done.error_code) == ("failed", "batch_not_found")
    sync_stack.client.delete(f"/v1/devices/{phone.device_id}", headers=sync_stack.headers())
    job = sync_stack.submit_internal("device.sync", {**payload, "batch_id": ident()}, user_id=user)
    done = sync_stack.wait_state(job["id"])
    assert (done.state, done.error_code) == ("failed", "device_revoked")


def test_bad_changes_are_rejected_one_by_one(sync_stack: Stack) -> None:
    user = new_user(sync_stack)
    phone = new_device(sync_stack, user)
    good, now = ident(), phone._stamp().wire()
    phone.pending = [
        {"type": "contact", "id": good, "hlc": now, "fields": {"name": "Ok"}},
        {"type": "contact", "id": ident(), "hlc": now, "fields": {"email": "no name"}},
        {"type": "contact", "id": "not-a-uuid", "hlc": now, "fields": {"name": "x"}},
        {"type": "planet", "id": ident(), "hlc": now, "fields": {"name": "x"}},
        {"type": "task", "id": ident(), "hlc": now, "fields": {"title": "t", "status": "maybe"}},
        {"type": "contact", "id": ident(), "hlc": "yesterday", "fields": {"name": "x"}},
        {"type": "contact", "id": ident(), "hlc": now, "delete": True},
        "not even an object",
        {"type": "contact", "id": good, "hlc": now, "fields": {"name": "x" * 201}},
    ]
    result = phone.sync()
    codes = [(r["index"], r["code"]) for r in result["rejected"]]
    assert codes == [
        (1, "missing_fields"),
        (2, "invalid_id"),
        (3, "unknown_type"),
        (4, "invalid_value"),
        (5, "invalid_hlc"),
        (6, "unknown_entity"),
        (7, "invalid_change"),
        (8, "invalid_value"),
    ]
    assert result["applied"] == 1
    assert server_view(sync_stack, user) == {
        ("contact", good): {
            "name": "Ok",
            "email": None,
            "phone": None,
            "company": None,
            "notes": None,
        },
    }
    for body, code in (
        ({"batch_id": ident(), "changes": "nope"}, "invalid_request"),
        ({"batch_id": ident(), "changes": [], "cursor": "forged"}, "invalid_cursor"),
        ({"batch_id": ident()}, "invalid_payload"),
        ({"batch_id": ident(), "uploaded": True}, "batch_not_uploaded"),
    ):
        response = sync_stack.client.post(
            f"/v1/devices/{phone.device_id}/sync", json=body, headers=phone.headers
        )
        assert response.json()["code"] == code, response.text
        assert response.status_code in (409, 422)


def test_skewed_clock_changes_are_rejected_until_restamped(sync_stack: Stack) -> None:
    user = new_user(sync_stack)
    ahead = new_device(sync_stack, user, skew_ms=24 * 3600 * 1000)
    ada = ident()
    ahead.edit("contact", ada, name="From the future")
    result = ahead.sync()
    assert [r["code"] for r in result["rejected"]] == ["clock_skew"]
    assert server_view(sync_stack, user) == {}
    ahead.skew_ms = 0  # the device fixed its clock (it can see server_time_ms in every result)
    ahead.clock = ahead.clock.__class__(result["server_time_ms"], 0, ahead.device_id)
    ahead.replica.clear()
    ahead.edit("contact", ada, name="From now")
    assert ahead.sync()["rejected"] == []
    assert server_view(sync_stack, user)[("contact", ada)]["name"] == "From now"


def test_duplicate_batches_apply_once_and_answer_the_same(sync_stack: Stack) -> None:
    user = new_user(sync_stack)
    phone, laptop = new_device(sync_stack, user), new_device(sync_stack, user, "laptop")
    ada = ident()
    laptop.edit("contact", ada, name="Ada")
    laptop.sync()
    phone.edit("contact", ada, name="Concurrent")  # later, without having seen laptop's "Ada"
    batch = ident()
    first = phone.wait(phone.send(batch_id=batch))
    again = phone.post(
        "/sync", {"batch_id": batch, "cursor": phone.cursor, "changes": phone.pending}, expect=200
    )
    assert again["job_id"] == first["job_id"]
    payload = {"device_id": phone.device_id, "batch_id": batch}  # a second job, same batch
    other_job = sync_stack.submit_internal("device.sync", payload, user_id=user)
    replay = sync_stack.wait_state(other_job["id"])
    assert replay.state == "succeeded" and replay.result == first["result"]
    with session_scope(sync_stack.sessions) as session:
        logged = (
            session.execute(select(SyncConflict).where(SyncConflict.user_id == uuid.UUID(user)))
            .scalars()
            .all()
        )
    assert len(logged) == first["result"]["conflicts"] == 1  # equal values (defaults) lose nothing
    assert (logged[0].lost_value, logged[0].lost_node) == ("Ada", laptop.device_id)


def test_large_batch_via_presigned_upload_and_delta_via_presigned_link(sync_stack: Stack) -> None:
    user = new_user(sync_stack)
    phone, laptop = new_device(sync_stack, user), new_device(sync_stack, user, "laptop")
    for n in range(1500):
        phone.edit("contact", ident(), name=f"Contact {n}", notes="imported " * 5)
    result = phone.sync(upload=True)
    assert result["applied"] == 1500 and result["rejected"] == []
    laptop_result = laptop.sync()
    assert laptop_result["delta"] is None and laptop_result["delta_object"]["bytes"] > 20000
    assert laptop_result["entity_count"] == 1500
    assert laptop.visible() == phone.visible() == server_view(sync_stack, user)


def test_two_devices_sync_concurrently_through_the_workers(sync_stack: Stack) -> None:
    user = new_user(sync_stack)
    devices = [new_device(sync_stack, user, f"d{n}") for n in range(3)]
    shared = [ident() for _ in range(20)]
    for n, device in enumerate(devices):
        for entity in shared:
            device.edit("contact", entity, name=f"by {n}", notes=f"{n}")
    jobs = [device.send() for device in devices]  # all in flight at once
    for device, job in zip(devices, jobs, strict=True):
        finished = device.wait(job)
        assert finished["state"] == "succeeded", finished
        device.receive(finished["result"])
    for device in devices:
        device.sync()
    expected = server_view(sync_stack, user)
    assert all(device.visible() == expected for device in devices)
    assert len(expected) == 20
    with session_scope(sync_stack.sessions) as session:
        entities = (
            session.execute(select(SyncRegisters).where(SyncRegisters.user_id == uuid.UUID(user)))
            .scalars()
            .all()
        )
    assert len(entities) == 20  # one row per entity, one register per field, however many writers
    assert all(set(e.registers) == {"name", "email", "phone", "company", "notes"} for e in entities)


def test_a_cursor_older_than_tombstone_retention_gets_a_full_resync(sync_stack: Stack) -> None:
    user = new_user(sync_stack)
    phone = new_device(sync_stack, user)
    keep, gone = ident(), ident()
    phone.edit("contact", keep, name="Keep")
    phone.edit("contact", gone, name="Gone")
    first = phone.sync()
    assert first["full_resync"] is True  # no cursor yet
    phone.delete("contact", gone)
    assert phone.sync()["full_resync"] is False
    stale = datetime.now(UTC) - timedelta(days=31)
    phone.cursor = Cursor(user, stale).encode(CURSOR_KEYS)
    phone.replica.clear()  # whatever the device had is replaced by the full state
    result = phone.sync()
    assert result["full_resync"] is True
    assert [(e["id"], e["deleted"]) for e in result["delta"]] == [(keep, False)]
    assert phone.visible() == server_view(sync_stack, user)


def test_devices_are_listed_renamed_and_settings_limit_types(sync_stack: Stack) -> None:
    user = new_user(sync_stack)
    phone = new_device(sync_stack, user)
    headers = sync_stack.headers()
    listed = sync_stack.client.get(f"/v1/devices?user_id={user}", headers=headers).json()
    assert [d["id"] for d in listed["devices"]] == [phone.device_id]
    assert "secret" not in listed["devices"][0]
    renamed = sync_stack.client.patch(
        f"/v1/devices/{phone.device_id}", json={"name": "work phone"}, headers=headers
    )
    assert renamed.json()["name"] == "work phone"
    body = {"user_id": user, "types": ["contact"], "interval_s": 120}
    assert sync_stack.client.put("/v1/devices/settings", json=body, headers=headers).json() == body
    wrong = sync_stack.client.put(
        "/v1/devices/settings", json={**body, "types": ["songs"]}, headers=headers
    )
    assert (wrong.status_code, wrong.json()["code"]) == (422, "invalid_request")
    phone.edit("task", ident(), title="not synced")
    result = phone.sync()
    assert [r["code"] for r in result["rejected"]] == ["type_not_synced"]
    assert result["settings"] == {"types": ["contact"], "interval_s": 120}
    unknown = sync_stack.client.post(
        "/v1/devices", json={"user_id": ident(), "name": "x", "platform": "ios"}, headers=headers
    )
    assert unknown.status_code == 404


def test_crash_before_commit_then_redelivery_gives_the_same_state_and_delta(
    sync_stack: Stack,
) -> None:
    user = new_user(sync_stack)
    phone, laptop = new_device(sync_stack, user), new_device(sync_stack, user, "laptop")
    laptop.edit("contact", ident(), name="From the laptop")
    laptop.sync()
    phone.edit("contact", ident(), name="From the phone")
    payload = DeviceSyncPayload(device_id=uuid.UUID(phone.device_id), batch_id=uuid.uuid4())
    with session_scope(sync_stack.sessions) as session:
        sync_repo.stage_batch(session, payload.device_id, payload.batch_id, phone.pending)
    policy = SyncPolicy(bucket_name(sync_stack.bucket_prefix, Bucket.SYNC), CURSOR_KEYS)
    store = sync_stack.store

    def run() -> dict[str, Any]:
        with session_scope(sync_stack.sessions) as session:
            return service.sync_device(
                session, lambda: store, policy, user_id=user, payload=payload
            )

    crashed = sync_stack.sessions()
    lost = service.sync_device(crashed, lambda: store, policy, user_id=user, payload=payload)
    crashed.rollback()  # merged and answered, but the transaction never committed
    crashed.close()
    assert server_view(sync_stack, user) == laptop.visible()
    redelivered, duplicate = run(), run()
    assert duplicate == redelivered  # stored under the batch id
    same = ("applied", "rejected", "conflicts", "delta", "full_resync", "entity_count")
    assert {k: lost[k] for k in same} == {k: redelivered[k] for k in same}
    phone.receive(redelivered)
    laptop.sync()
    assert phone.visible() == laptop.visible() == server_view(sync_stack, user)


def test_pruned_tombstones_keep_deleted_entities_deleted(sync_stack: Stack) -> None:
    user = new_user(sync_stack)
    phone, laptop = new_device(sync_stack, user), new_device(sync_stack, user, "laptop")
    gone, kept = ident(), ident()
    phone.edit("contact", gone, name="Gone")
    phone.edit("contact", kept, name="Kept")
    phone.sync()
    laptop.sync()
    laptop.edit("contact", gone, notes="offline, before the delete")
    phone.delete("contact", gone)
    phone.sync()
    with session_scope(sync_stack.sessions) as session:
        pruned = sync_repo.prune(session, datetime.now(UTC) + timedelta(minutes=1))
    assert pruned["contact"] >= 1 and pruned["batches"] >= 3  # other tests' users count too
    with session_scope(sync_stack.sessions) as session:
        left = session.execute(
            select(SyncRegisters.entity_id).where(SyncRegisters.entity_id.in_([gone, kept]))
        ).all()
    assert left == [(kept,)]  # the deleted entity's registers (tombstone included) are gone
    laptop.sync()
    phone.sync()
    assert ("contact", gone) not in server_view(sync_stack, user)
    assert phone.visible() == laptop.visible() == server_view(sync_stack, user)
    [lost] = conflicts(sync_stack, user)
    assert (lost["field"], lost["lost_value"]) == ("notes", "offline, before the delete")


def test_pruning_forgets_old_conflicts_and_sync_objects(sync_stack: Stack) -> None:
    """The scheduler's sync chore (workers/sync/prune.py) on real PostgreSQL and S3. Broken on
    purpose once (objects compared with the tombstone cutoff instead of their own): the
    8-day-old objects survived and this test failed."""
    user = new_user(sync_stack)
    phone, laptop = new_device(sync_stack, user), new_device(sync_stack, user, "laptop")
    ada = ident()
    laptop.edit("contact", ada, name="Ada")
    laptop.sync()
    phone.edit("contact", ada, name="Concurrent")  # had not seen "Ada": a conflict
    phone.sync()
    assert len(conflicts(sync_stack, user)) == 1
    store, bucket = sync_stack.store, bucket_name(sync_stack.bucket_prefix, Bucket.SYNC)
    for key in ("batches/d/b.json", "deltas/d/b.json", "elsewhere/kept.json"):
        store.put_bytes(bucket, key, b"{}")
    rules = PruneRules(timedelta(days=30), timedelta(days=90), timedelta(days=7), bucket)

    now = datetime.now(UTC)
    assert prune_once(sync_stack.sessions, store, rules, now=now)["objects"] == 0
    assert len(conflicts(sync_stack, user)) == 1
    pruned = prune_once(sync_stack.sessions, store, rules, now=now + timedelta(days=8))
    assert pruned["objects"] >= 2 and pruned["conflicts"] == 0
    assert [o.key for o in store.list_objects(bucket, "")] == ["elsewhere/kept.json"]
    assert len(conflicts(sync_stack, user)) == 1  # the log is kept longer
    pruned = prune_once(sync_stack.sessions, store, rules, now=now + timedelta(days=91))
    assert pruned["conflicts"] >= 1
    assert conflicts(sync_stack, user) == []


def test_a_lost_value_is_restored_to_every_device_or_dismissed(sync_stack: Stack) -> None:
    user = new_user(sync_stack)
    phone, laptop = new_device(sync_stack, user), new_device(sync_stack, user, "laptop")
    ada, bob = ident(), ident()
    laptop.edit("contact", ada, name="Ada")
    laptop.edit("contact", bob, name="Bob")
    laptop.sync()
    phone.edit("contact", ada, name="Concurrent")  # had not seen the laptop's writes
    phone.edit("contact", bob, name="Robert")
    phone.sync()
    laptop.sync()
    assert laptop.visible()[("contact", ada)]["name"] == "Concurrent"
    lost = {c["entity_id"]: c for c in conflicts(sync_stack, user)}
    url = "/v1/devices/conflicts/{}/resolve"

    def resolve(conflict: int, action: str) -> Any:
        return sync_stack.client.post(
            url.format(conflict), json={"action": action}, headers=sync_stack.headers()
        )

    restored = resolve(lost[ada]["id"], "restore")
    assert restored.status_code == 200, restored.text
    assert restored.json()["resolution"] == "restored" and restored.json()["resolved_at"]
    dismissed = resolve(lost[bob]["id"], "dismiss")
    assert dismissed.json()["resolution"] == "dismissed"
    again = resolve(lost[ada]["id"], "dismiss")
    assert (again.status_code, again.json()["code"]) == (409, "already_resolved")
    assert resolve(10**12, "restore").status_code == 404
    assert resolve(lost[bob]["id"], "undo").status_code == 422
    phone.sync()
    laptop.sync()
    assert phone.visible()[("contact", ada)]["name"] == "Ada"  # the restore won everywhere
    assert phone.visible()[("contact", bob)]["name"] == "Robert"  # dismissed: nothing changed
    assert phone.visible() == laptop.visible() == server_view(sync_stack, user)
