"""Backup and restore on real PostgreSQL, SeaweedFS and RabbitMQ, through a real worker."""

from __future__ import annotations

import base64
import json
import os
import random
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pyarrow as pa
import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from shared.crypto import KeyRing
from shared.db.demo_data import generate_demo_data
from shared.db.engine import libpq_dsn, session_scope
from shared.db.models import Job
from shared.embedded import EmbeddedS3
from shared.storage.buckets import Bucket, bucket_name
from tests.support.backups import Editor, add_bystander, live_content, only_user, snapshot, wipe
from tests.support.stack import Stack
from workers.backups.manifest import Manifest, chunk_key, seal
from workers.backups.pipeline import SegmentStats, seal_tables
from workers.backups.restore import restore_backup
from workers.backups.service import BackupDeps

pytestmark = pytest.mark.integration

CHUNK = 4096  # small chunks and batches: many of each, even on a small data set


def new_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


KEYS = f"k1:{new_key()}"
MASTER = base64.b64decode(KEYS.split(":", 1)[1])


@dataclass
class World:
    stack: Stack
    user: uuid.UUID
    bystander: uuid.UUID

    @property
    def bucket(self) -> str:
        return bucket_name(self.stack.bucket_prefix, Bucket.BACKUPS)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, s3_server: EmbeddedS3) -> Iterator[World]:
    stack = Stack.create(tmp_path_factory.mktemp("logs"), s3=s3_server)
    stack.start_scheduler(CONVEYOR_BACKUP_SCHEDULE_EVERY_S="0.5")
    stack.start_worker(
        "backup",
        processes=1,
        threads=2,
        CONVEYOR_MASTER_KEYS=KEYS,
        CONVEYOR_BACKUP_CHUNK_BYTES=str(CHUNK),
        CONVEYOR_BACKUP_BATCH_BYTES="16384",
    )
    generate_demo_data(stack.engine, users=1, messages=1500, seed=8)
    user = only_user(stack.engine)
    bystander = add_bystander(stack.engine)
    yield World(stack, user, bystander)
    stack.close()


def api(
    world: World, method: str, path: str, token: str | None = None, **kwargs: Any
) -> httpx.Response:
    return world.stack.client.request(method, path, headers=world.stack.headers(token), **kwargs)


def backup(
    world: World,
    type: str = "full",
    data_types: list[str] | None = None,
    *,
    user: uuid.UUID | None = None,
    token: str | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"user_id": str(user or world.user), "type": type}
    if data_types:
        body["data_types"] = data_types
    sent = api(world, "POST", "/v1/backups", token, json=body)
    assert sent.status_code == 202, sent.text
    job = world.stack.wait_state(sent.json()["job_id"], timeout=120)
    assert job.state == "succeeded", (job.error_code, job.error_message)
    return dict(api(world, "GET", f"/v1/backups/{sent.json()['id']}", token).json())


def restore(
    world: World,
    backup_id: str,
    mode: str = "replace",
    dry_run: bool = False,
    *,
    token: str | None = None,
) -> Job:
    body = {"mode": mode, "dry_run": dry_run}
    sent = api(world, "POST", f"/v1/backups/{backup_id}/restore", token, json=body)
    assert sent.status_code == 202, sent.text
    return world.stack.wait_state(sent.json()["job_id"], timeout=120)


def test_full_and_three_incrementals_restore_exactly_at_every_point(world: World) -> None:
    engine, editor = world.stack.engine, Editor(world.stack.engine, world.user, random.Random(1))
    others = snapshot(engine, world.bystander)
    points = [(backup(world), snapshot(engine, world.user))]
    for n in (5, 8, 3):
        editor.round(n)
        made = backup(world, "incremental")
        assert (made["type"], made["parent_id"]) == ("incremental", points[-1][0]["id"])
        assert sum(made["row_counts"].values()) < sum(points[0][0]["row_counts"].values())
        points.append((made, snapshot(engine, world.user)))
    assert points[1][1] != points[0][1] and points[3][1] != points[2][1]

    for made, expected in reversed(points):
        wipe(engine, world.user)
        job = restore(world, made["id"])
        assert job.state == "succeeded", (job.error_code, job.error_message)
        assert snapshot(engine, world.user) == expected
        assert (
            job.result is not None
            and len(job.result["chain"]) == points.index((made, expected)) + 1
        )
    assert snapshot(engine, world.bystander) == others


def test_restoring_twice_changes_nothing_more(world: World) -> None:
    made = backup(world)
    wipe(world.stack.engine, world.user)
    assert restore(world, made["id"]).state == "succeeded"
    first = snapshot(world.stack.engine, world.user)
    again = restore(world, made["id"])
    assert again.result is not None
    assert all(
        t == {"inserted": 0, "updated": 0, "deleted": 0} for t in again.result["tables"].values()
    )
    assert snapshot(world.stack.engine, world.user) == first


def test_replace_tombstones_newer_rows_and_merge_keeps_them(world: World) -> None:
    """The editor's round adds 4 messages, then soft-deletes 2 of the user's messages picked
    at random, which may be new ones: the replace tombstones the new messages still live.
    (It asserted >= 4 once and failed when the editor's delete had hit a new message.)"""
    engine = world.stack.engine
    made = backup(world)
    at_backup = snapshot(engine, world.user)
    Editor(engine, world.user, random.Random(2)).round(4)
    edited = snapshot(engine, world.user)
    new_live = _new_live_messages(engine, world.user, made_before=at_backup)
    assert new_live >= 2  # 4 added, at most 2 of them soft-deleted by the editor

    assert restore(world, made["id"], mode="merge").state == "succeeded"
    assert snapshot(engine, world.user) == edited  # every local row is newer: all kept

    job = restore(world, made["id"], mode="replace")
    assert job.state == "succeeded" and job.result is not None
    assert job.result["tables"]["messages"]["deleted"] >= new_live  # the new ones: tombstoned
    assert _new_live_messages(engine, world.user, made_before=at_backup) == 0
    assert live_content(snapshot(engine, world.user), engine) == live_content(at_backup, engine)


def _new_live_messages(engine: Any, user: uuid.UUID, *, made_before: Any) -> int:
    """The user's live messages that the snapshot `made_before` does not hold."""
    with engine.connect() as conn:
        live = conn.execute(
            text("SELECT id FROM messages WHERE author_id = :u AND deleted_at IS NULL"),
            {"u": user},
        ).scalars()
        known = {value for row in made_before["messages"] for value in row}
        return sum(1 for message_id in live if message_id not in known)


def test_merge_brings_back_lost_rows_and_keeps_local_edits(world: World) -> None:
    engine = world.stack.engine
    made = backup(world)
    with engine.begin() as conn:
        lost = (
            conn.execute(
                text(
                    "DELETE FROM contacts WHERE owner_id = :u AND deleted_at IS NULL RETURNING id"
                ),
                {"u": world.user},
            )
            .scalars()
            .all()
        )
        edited = conn.execute(
            text(
                "UPDATE messages SET body = 'edited locally' WHERE id = (SELECT id FROM messages "
                "WHERE author_id = :u AND deleted_at IS NULL ORDER BY id LIMIT 1) RETURNING id"
            ),
            {"u": world.user},
        ).scalar_one()
    job = restore(world, made["id"], mode="merge")
    assert job.state == "succeeded" and job.result is not None
    assert job.result["tables"]["contacts"]["inserted"] == len(lost) > 0
    with engine.connect() as conn:
        body = conn.execute(
            text("SELECT body FROM messages WHERE id = :i"), {"i": edited}
        ).scalar_one()
        back = conn.execute(
            text("SELECT count(*) FROM contacts WHERE id = ANY(:ids)"), {"ids": lost}
        ).scalar_one()
    assert (body, back) == ("edited locally", len(lost))


def test_dry_run_counts_and_changes_nothing(world: World) -> None:
    """The editor's round adds 2 messages and soft-deletes 1 picked at random, maybe a new
    one: the dry run counts the new ones still live as deletions."""
    engine = world.stack.engine
    made = backup(world)
    at_backup = snapshot(engine, world.user)
    Editor(engine, world.user, random.Random(3)).round(2)
    before = snapshot(engine, world.user)
    new_live = _new_live_messages(engine, world.user, made_before=at_backup)
    assert new_live >= 1
    job = restore(world, made["id"], dry_run=True)
    assert job.state == "succeeded" and job.result is not None
    assert job.result["dry_run"] is True
    assert job.result["tables"]["messages"]["deleted"] >= new_live
    assert job.result["tables"]["tasks"]["deleted"] >= 1
    assert snapshot(engine, world.user) == before


def test_selective_backup_holds_and_restores_only_its_types(world: World) -> None:
    engine = world.stack.engine
    made = backup(world, data_types=["user_settings", "contacts"])
    assert sorted(made["row_counts"]) == ["contacts", "user_settings"]
    expected = snapshot(engine, world.user)
    Editor(engine, world.user, random.Random(4)).round(2)
    changed = snapshot(engine, world.user)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM contacts WHERE owner_id = :u"), {"u": world.user})
    assert restore(world, made["id"]).state == "succeeded"
    now = snapshot(engine, world.user)
    assert live_content(now, engine)["contacts"] == live_content(expected, engine)["contacts"]
    assert now["messages"] == changed["messages"]  # not part of the backup: untouched


def _corrupt_cases() -> list[str]:
    return [
        "flipped_byte",
        "truncated",
        "swapped_chunks",
        "appended",
        "manifest_tampered",
        "manifest_not_json",
        "object_missing",
    ]


@pytest.mark.parametrize("case", _corrupt_cases())
def test_corrupt_backup_is_refused_and_nothing_changes(world: World, case: str) -> None:
    made = backup(world)
    row = _row(world, made["id"])
    store, bucket = world.stack.store, world.bucket
    original = store.get_bytes(bucket, row["object_key"])
    manifest_bytes = store.get_bytes(bucket, row["manifest_key"])
    segments = row["manifest"]["manifest"]["segments"]
    messages = next(s for s in segments if s["table"] == "messages")
    assert messages["chunks"] >= 3
    data = bytearray(original)
    if case == "flipped_byte":
        data[len(data) // 2] ^= 0x01
    elif case == "truncated":
        data = data[: -(CHUNK + 16)]
    elif case == "appended":
        data += b"\0" * 16
    elif case == "swapped_chunks":
        size, start = CHUNK + 16, messages["offset"]
        first, second = data[start : start + size], data[start + size : start + 2 * size]
        data[start : start + 2 * size] = second + first
    if case == "manifest_tampered":
        document = json.loads(manifest_bytes)
        document["manifest"]["segments"][3]["rows"] += 1
        store.put_bytes(bucket, row["manifest_key"], json.dumps(document).encode())
    elif case == "manifest_not_json":
        store.put_bytes(bucket, row["manifest_key"], manifest_bytes[:-10])
    elif case == "object_missing":
        store.delete(bucket, row["object_key"])
    else:
        store.put_bytes(bucket, row["object_key"], bytes(data))
    Editor(world.stack.engine, world.user, random.Random(5)).round(1)
    before = snapshot(world.stack.engine, world.user)
    try:
        job = restore(world, made["id"])
    finally:
        store.put_bytes(bucket, row["object_key"], original)
        store.put_bytes(bucket, row["manifest_key"], manifest_bytes)
    assert (job.state, job.error_code) == ("failed", "backup_corrupt"), job.error_message
    assert snapshot(world.stack.engine, world.user) == before


def _row(world: World, backup_id: str) -> dict[str, Any]:
    with world.stack.engine.connect() as conn:
        found = (
            conn.execute(
                text("SELECT object_key, manifest_key, manifest FROM backups WHERE id = :i"),
                {"i": backup_id},
            )
            .mappings()
            .one()
        )
    return dict(found)


class Ctx:
    """What a handler needs from JobContext, for in-process calls with other key rings."""

    def __init__(self, sessions: sessionmaker[Session], user_id: uuid.UUID) -> None:
        self.sessions, self.user_id = sessions, str(user_id)

    def checkpoint(self, progress: float, message: str | None = None) -> None:
        pass


def _restore_with(
    world: World, backup_id: str, ring: KeyRing, *, user: uuid.UUID | None = None
) -> dict[str, Any]:
    deps = BackupDeps(
        store=world.stack.store,
        bucket=world.bucket,
        keys=ring,
        dsn=libpq_dsn(world.stack.db_url),
        chunk_size=CHUNK,
    )
    with session_scope(world.stack.sessions) as session:
        return restore_backup(
            Ctx(world.stack.sessions, user or world.user),  # type: ignore[arg-type]
            session,
            deps,
            backup_id=uuid.UUID(backup_id),
            mode="replace",
            dry_run=False,
        )


def test_wrong_master_key_and_wrong_user_are_refused(world: World) -> None:
    made = backup(world)
    before = snapshot(world.stack.engine, world.user)
    for ring in (KeyRing.parse(f"k1:{new_key()}"), KeyRing.parse(f"k9:{new_key()}")):
        with pytest.raises(Exception) as caught:
            _restore_with(world, made["id"], ring)
        assert getattr(caught.value, "code", None) == "backup_key_invalid"
    with pytest.raises(Exception) as caught:
        _restore_with(world, made["id"], KeyRing.parse(KEYS), user=world.bystander)
    # Another user's backup is "not found": its existence is not revealed.
    assert getattr(caught.value, "code", None) == "not_found"
    assert snapshot(world.stack.engine, world.user) == before


def test_backup_job_for_another_user_is_not_found(world: World) -> None:
    """A service-published job naming the wrong user. Broken on purpose once (no owner check
    in create_backup): the job succeeded with the other user's backup summary."""
    made = backup(world)
    payload = {"backup_id": made["id"]}
    job = world.stack.submit_internal("backup.create", payload, user_id=str(world.bystander))
    done = world.stack.wait_state(job["id"], timeout=120)
    assert (done.state, done.error_code) == ("failed", "not_found")
    restored = world.stack.submit_internal("backup.restore", payload, user_id=str(world.bystander))
    done = world.stack.wait_state(restored["id"], timeout=120)
    assert (done.state, done.error_code) == ("failed", "not_found")


def test_rotated_master_key_still_restores_and_rewrap_moves_it(world: World) -> None:
    made = backup(world)
    new_first = f"k2:{new_key()}"
    rotated = KeyRing.parse(f"{new_first},{KEYS}")
    wipe(world.stack.engine, world.user)
    assert _restore_with(world, made["id"], rotated)["chain"][-1] == made["id"]

    done = subprocess.run(
        [sys.executable, "-m", "workers.cli", "backups", "rewrap"],
        env=world.stack.env(CONVEYOR_MASTER_KEYS=f"{new_first},{KEYS}"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "re-wrapped" in done.stdout and new_first.split(":")[1] not in done.stdout + done.stderr
    assert api(world, "GET", f"/v1/backups/{made['id']}").json()["key_id"] == "k2"
    only_new = KeyRing.parse(new_first)  # the old master key is retired
    assert _restore_with(world, made["id"], only_new)["chain"][-1] == made["id"]

    # `conveyor keys reencrypt` folds the rewrap in: the next rotation moves it to k3.
    newest = f"k3:{new_key()}"
    walked = world.stack.cli(
        "keys", "reencrypt", timeout=120, CONVEYOR_MASTER_KEYS=f"{newest},{new_first},{KEYS}"
    )
    assert walked.returncode == 0, walked.stdout + walked.stderr
    assert api(world, "GET", f"/v1/backups/{made['id']}").json()["key_id"] == "k3"
    assert _restore_with(world, made["id"], KeyRing.parse(newest))["chain"][-1] == made["id"]


def test_api_refuses_bad_input_and_guards_chains(world: World) -> None:
    bad = api(
        world, "POST", "/v1/backups", json={"user_id": str(world.user), "data_types": ["nope"]}
    )
    assert (bad.status_code, bad.json()["code"]) == (422, "invalid_data_types")
    missing = api(world, "GET", f"/v1/backups/{uuid.uuid4()}")
    assert (missing.status_code, missing.json()["code"]) == (404, "not_found")

    full = backup(world, data_types=["tasks"])
    child = backup(world, "incremental", data_types=["tasks"])
    assert child["parent_id"] == full["id"]
    refused = api(world, "DELETE", f"/v1/backups/{full['id']}")
    assert (refused.status_code, refused.json()["code"]) == (409, "backup_has_dependents")

    link = api(world, "GET", f"/v1/backups/{full['id']}/download").json()
    assert len(httpx.get(link["url"], timeout=60).content) == full["stored_bytes"]
    listed = api(world, "GET", f"/v1/backups?user_id={world.user}").json()["backups"]
    assert {full["id"], child["id"]} <= {b["id"] for b in listed}

    gone = api(world, "DELETE", f"/v1/backups/{full['id']}?chain=true")
    assert gone.status_code == 200 and set(gone.json()["deleted"]) == {full["id"], child["id"]}
    assert api(world, "GET", f"/v1/backups/{child['id']}").status_code == 404


def test_scheduled_backups_alternate_types_and_retention_keeps_chains_whole(world: World) -> None:
    from shared.storage.base import ObjectNotFound
    from tests.support.services import wait_for

    settings = {"interval_s": 3600, "type": "incremental", "data_types": ["decisions"]}
    put = api(
        world,
        "PUT",
        f"/v1/backup-settings/{world.user}",
        json={**settings, "full_every": 2, "keep_last": 2},
    )
    assert put.status_code == 200, put.text
    assert api(world, "GET", f"/v1/backup-settings/{world.user}").json()["keep_last"] == 2

    def scheduled() -> list[dict[str, Any]]:
        listed = api(world, "GET", f"/v1/backups?user_id={world.user}").json()["backups"]
        return [b for b in listed if b["data_types"] == ["decisions"]][::-1]  # oldest first

    def fresh() -> dict[str, Any] | None:
        seen = {m["id"] for m in made}
        done = [b for b in scheduled() if b["id"] not in seen and b["status"] == "completed"]
        return done[-1] if done else None

    made: list[dict[str, Any]] = []
    for run in range(6):
        if run:  # time passes: the schedule is due again
            with world.stack.engine.begin() as conn:
                conn.execute(
                    text("UPDATE backup_settings SET next_run_at = now() WHERE user_id = :u"),
                    {"u": world.user},
                )
        made.append(wait_for(fresh, timeout=60, what=f"scheduled backup {run + 1}"))  # type: ignore[arg-type]
    assert [m["type"] for m in made] == [
        "full",
        "incremental",
        "incremental",
        "full",
        "incremental",
        "incremental",
    ]
    left = [b["id"] for b in scheduled()]
    assert left == [made[3]["id"], made[4]["id"], made[5]["id"]]
    with pytest.raises(ObjectNotFound):
        world.stack.store.stat(world.bucket, f"users/{world.user}/{made[0]['id']}.cbk")
    job = restore(world, made[5]["id"])
    assert job.result is not None and job.result["chain"] == left
    with world.stack.engine.begin() as conn:
        conn.execute(text("DELETE FROM backup_settings WHERE user_id = :u"), {"u": world.user})


@pytest.fixture(scope="module")
def big_user(world: World) -> uuid.UUID:
    """A user with enough rows that a backup takes hundreds of batches (and checkpoints)."""
    with world.stack.engine.connect() as conn:
        before = set(conn.execute(text("SELECT id FROM users")).scalars())
    generate_demo_data(world.stack.engine, users=1, messages=40_000, seed=9)
    with world.stack.engine.connect() as conn:
        [user] = set(conn.execute(text("SELECT id FROM users")).scalars()) - before
    return uuid.UUID(str(user))


def _kill_worker_when(world: World, job_id: str, low: float) -> None:
    """SIGKILL the backup worker once the job's progress passes `low`, start a fresh one."""
    from tests.support.services import wait_for

    wait_for(
        lambda: (job := world.stack.job(job_id)).state == "running" and job.progress > low,
        timeout=120,
        interval=0.02,
        what=f"job {job_id} past {low:.0%}",
    )
    for process in world.stack.processes:
        if "backup" in process.args and process.poll() is None:  # type: ignore[operator]
            world.stack.kill(process, signal.SIGKILL)
    assert world.stack.job(job_id).state == "running"


def _start_worker(world: World) -> None:
    world.stack.start_worker(
        "backup",
        processes=1,
        threads=2,
        CONVEYOR_MASTER_KEYS=KEYS,
        CONVEYOR_BACKUP_CHUNK_BYTES=str(CHUNK),
        CONVEYOR_BACKUP_BATCH_BYTES="16384",
    )


def test_sigkill_mid_backup_leaves_no_object_and_the_retry_completes(
    world: World, big_user: uuid.UUID
) -> None:
    from shared.storage.base import ObjectNotFound

    expected = snapshot(world.stack.engine, big_user)
    sent = api(world, "POST", "/v1/backups", json={"user_id": str(big_user), "type": "full"})
    backup_id, job_id = sent.json()["id"], sent.json()["job_id"]
    _kill_worker_when(world, job_id, 0.2)
    with pytest.raises(ObjectNotFound):  # the multipart upload was never completed
        world.stack.store.stat(world.bucket, f"users/{big_user}/{backup_id}.cbk")
    assert api(world, "GET", f"/v1/backups/{backup_id}").json()["status"] == "running"

    _start_worker(world)
    job = world.stack.wait_state(job_id, timeout=180)
    assert (job.state, job.attempt) == ("succeeded", 2), job.error_message
    assert api(world, "GET", f"/v1/backups/{backup_id}").json()["row_counts"]["messages"] > 10_000

    wipe(world.stack.engine, big_user)
    sent = api(world, "POST", f"/v1/backups/{backup_id}/restore", json={"mode": "replace"})
    _kill_worker_when(world, sent.json()["job_id"], 0.7)  # past verification: staging rows
    _start_worker(world)
    job = world.stack.wait_state(sent.json()["job_id"], timeout=180)
    assert (job.state, job.attempt) == ("succeeded", 2), job.error_message
    assert snapshot(world.stack.engine, big_user) == expected


def test_cancel_mid_backup_stops_it_and_leaves_no_object(world: World, big_user: uuid.UUID) -> None:
    from shared.storage.base import ObjectNotFound
    from tests.support.services import wait_for

    sent = api(world, "POST", "/v1/backups", json={"user_id": str(big_user), "type": "full"})
    backup_id, job_id = sent.json()["id"], sent.json()["job_id"]
    wait_for(
        lambda: (job := world.stack.job(job_id)).state == "running" and job.progress > 0.05,
        timeout=120,
        interval=0.02,
        what="backup under way",
    )
    assert api(world, "POST", f"/v1/jobs/{job_id}/cancel").status_code in (200, 202)
    assert world.stack.wait_state(job_id, timeout=60).state == "cancelled"
    shown = api(world, "GET", f"/v1/backups/{backup_id}").json()
    assert (shown["status"], shown["row_counts"]) == ("cancelled", None)
    assert 0.05 < shown["progress"] < 1
    with pytest.raises(ObjectNotFound):
        world.stack.store.stat(world.bucket, f"users/{big_user}/{backup_id}.cbk")


def test_no_key_material_in_logs_results_or_rows(world: World) -> None:
    made = backup(world)
    secret = KEYS.split(":", 1)[1]
    logs = "".join(p.read_text(errors="replace") for p in world.stack.logs.glob("*.log"))
    job = world.stack.job(made["job_id"])
    assert "backups.created" in logs and secret not in logs
    assert secret not in json.dumps(job.result) and "wrapped" not in json.dumps(job.result)
    assert "wrapped" not in json.dumps(made)


def _independent_open(document: dict[str, Any], data: bytes, master: bytes) -> dict[str, pa.Table]:
    """docs/backups.md, "Writing an independent decryptor", with primitives only (no
    workers.backups code): returns each segment's table after checking every tag and hash."""
    import hashlib
    import hmac
    import struct

    import zstandard
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    m = document["manifest"]
    backup_id = uuid.UUID(m["backup_id"]).bytes
    wrapped = base64.b64decode(document["key"]["wrapped"])
    _, kid, sealed = wrapped.split(b":", 2)
    assert kid.decode() == document["key"]["kid"]
    data_key = AESGCM(master).decrypt(
        sealed[:12], sealed[12:], b"conveyor-backup-key-v1:" + backup_id
    )

    def derive(info: bytes) -> bytes:
        return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(data_key)

    canonical = json.dumps(m, sort_keys=True, separators=(",", ":")).encode()
    mac = hmac.new(
        derive(b"conveyor-backup-manifest-v1"), b"conveyor-backup-manifest-v1" + canonical, "sha256"
    )
    assert hmac.compare_digest(mac.hexdigest(), document["mac"]) and len(data) == m["object_bytes"]
    aead, size = AESGCM(derive(b"conveyor-backup-chunks-v1")), m["chunk_size"] + 16
    tables: dict[str, pa.Table] = {}
    for s, segment in enumerate(m["segments"]):
        body = data[segment["offset"] : segment["offset"] + segment["length"]]
        pieces = [body[i : i + size] for i in range(0, max(len(body), 1), size)]
        plain = b""
        for i, piece in enumerate(pieces):
            final = int(i == len(pieces) - 1)
            ad = b"conveyor-backup-chunk-v1" + backup_id + struct.pack(">IQB", s, i, final)
            plain += aead.decrypt(struct.pack(">IQ", s, i), piece, ad)
        ipc = zstandard.ZstdDecompressor().decompressobj().decompress(plain)
        assert hashlib.sha256(ipc).hexdigest() == segment["sha256"]
        tables[segment["table"]] = pa.ipc.open_stream(ipc).read_all()
    return tables


def test_the_documented_format_decrypts_without_conveyor_code(world: World) -> None:
    made = backup(world)
    link = api(world, "GET", f"/v1/backups/{made['id']}/download").json()
    document, data = (
        httpx.get(link["manifest_url"], timeout=60).json(),
        httpx.get(link["url"], timeout=60).content,
    )
    tables = _independent_open(document, data, MASTER)
    assert {name: t.num_rows for name, t in tables.items()} == made["row_counts"]


def _rewrite_rows(world: World, backup_id: str, change: Callable[[pa.Table], pa.Table]) -> None:
    """Give a completed backup other row records: its tables are opened as documented
    (`_independent_open`), changed, and sealed again (fresh data key, same ids); the row
    records the new manifest, as if the backup had been written that way."""
    row, store = _row(world, backup_id), world.stack.store
    m = row["manifest"]["manifest"]
    tables = _independent_open(
        row["manifest"], store.get_bytes(world.bucket, row["object_key"]), MASTER
    )
    data_key, stats = os.urandom(32), list[SegmentStats]()
    body = b"".join(
        seal_tables(
            ((name, change(table).to_reader()) for name, table in tables.items()),
            key=chunk_key(data_key),
            backup_id=uuid.UUID(backup_id),
            stats=stats,
            on_batch=lambda *_: None,
            chunk_size=m["chunk_size"],
        )
    )
    segments = [s.segment().model_dump() for s in stats]
    manifest = Manifest.model_validate({**m, "segments": segments, "object_bytes": len(body)})
    document = seal(manifest, data_key, KeyRing.parse(KEYS))
    store.put_bytes(world.bucket, row["object_key"], body, "application/octet-stream")
    store.put_bytes(
        world.bucket, row["manifest_key"], json.dumps(document).encode(), "application/json"
    )
    with world.stack.engine.begin() as conn:
        conn.execute(
            text("UPDATE backups SET manifest = :m, manifest_digest = :d WHERE id = :i"),
            {"m": json.dumps(document), "d": manifest.digest(), "i": backup_id},
        )


def _without_tenant(table: pa.Table) -> pa.Table:
    """The row records of a backup written before tenancy (migration 0010_tenancy12 added
    `tenant_id` as every product table's last column; nothing else changed since)."""
    return table.drop_columns(["tenant_id"])


def _in_tenant(tenant: str) -> Callable[[pa.Table], pa.Table]:
    def change(table: pa.Table) -> pa.Table:
        index = table.schema.get_field_index("tenant_id")
        field = table.schema.field(index)
        return table.set_column(index, field, pa.array([tenant] * table.num_rows, field.type))

    return change


@pytest.mark.parametrize("rows_say", ["nothing (before tenancy)", "globex"])
def test_restored_rows_go_to_the_acting_tenant_whatever_the_backup_says(
    world: World, rows_say: str
) -> None:
    """Issue #12 review: a backup made before tenancy has no `tenant_id` in its row records,
    and a backup's records must never carry rows into another tenant. An acme user is backed
    up, its records rewritten (field dropped, or set to globex), wiped and restored: every row
    is back in acme, exactly; a second restore changes nothing (the tenant is not compared).
    Before the fix the first case died (staging: null tenant_id, 5 attempts) and the second
    restored into globex. Broken on purpose once each (then restored): without the staging
    table's DROP NOT NULL the first case died again; inserting the staged tenant_id failed
    both; without the transaction acting as the tenant both landed in 'default'."""
    tenant = f"acme{uuid.uuid4().hex[:6]}"
    token, user = world.stack.new_api_key(tenant=tenant), add_bystander(world.stack.engine, tenant)
    made = backup(world, user=user, token=token)
    before = snapshot(world.stack.engine, user)
    assert {r[-1] for rows in before.values() for r in rows} == {tenant}  # tenant_id is last
    change = _without_tenant if rows_say.startswith("nothing") else _in_tenant(rows_say)
    _rewrite_rows(world, made["id"], change)
    wipe(world.stack.engine, user)
    job = restore(world, made["id"], token=token)
    assert job.state == "succeeded", (job.error_code, job.error_message)
    assert snapshot(world.stack.engine, user) == before
    again = restore(world, made["id"], token=token)
    assert again.result is not None, (again.error_code, again.error_message)
    assert all(
        t == {"inserted": 0, "updated": 0, "deleted": 0} for t in again.result["tables"].values()
    )
    assert snapshot(world.stack.engine, user) == before


def test_rows_that_no_longer_fit_fail_as_a_conflict_and_change_nothing(world: World) -> None:
    engine, channel = world.stack.engine, uuid.uuid4()
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO channels (id, owner_id, name, kind) VALUES (:c, :u, 'tmp', 'group')"),
            {"c": channel, "u": world.user},
        )
        conn.execute(
            text("INSERT INTO messages (id, channel_id, author_id, body) VALUES (:i, :c, :u, 'x')"),
            {"i": uuid.uuid4(), "c": channel, "u": world.user},
        )
    made = backup(world, data_types=["messages"])
    with engine.begin() as conn:  # a purge: the channel and its messages are hard-deleted
        conn.execute(text("DELETE FROM channels WHERE id = :c"), {"c": channel})
        conn.execute(
            text(
                "UPDATE messages SET body = 'changed after' WHERE id = (SELECT id FROM messages "
                "WHERE author_id = :u AND deleted_at IS NULL ORDER BY id LIMIT 1)"
            ),
            {"u": world.user},
        )
    before = snapshot(engine, world.user)
    job = restore(world, made["id"])
    assert (job.state, job.error_code) == ("failed", "restore_conflict"), job.error_message
    assert "messages" in (job.error_message or "")
    assert snapshot(engine, world.user) == before


def test_a_key_held_in_another_tenant_fails_as_a_conflict(world: World) -> None:
    """A backed-up row's key now belongs to another tenant's row: the restore (acting as the
    backup's tenant, so row-level security refuses to update that row) fails as
    `restore_conflict` and changes nothing, in either tenant. Broken on purpose once each:
    as the owner (no tenant) the restore succeeded without that contact (skipped silently);
    without mapping SQLSTATE 42501 the job died after 5 attempts."""
    tenant = f"acme{uuid.uuid4().hex[:6]}"
    token, user = world.stack.new_api_key(tenant=tenant), add_bystander(world.stack.engine, tenant)
    other = add_bystander(world.stack.engine, "globex")
    made = backup(world, user=user, token=token)
    [contact] = snapshot(world.stack.engine, user)["contacts"]
    wipe(world.stack.engine, user)
    with world.stack.engine.begin() as conn:
        conn.execute(
            text("UPDATE contacts SET id = :c WHERE owner_id = :o"), {"c": contact[0], "o": other}
        )
    before = {u: snapshot(world.stack.engine, u) for u in (user, other)}
    job = restore(world, made["id"], token=token)
    assert (job.state, job.error_code) == ("failed", "restore_conflict"), job.error_message
    assert "contacts" in (job.error_message or "")
    assert {u: snapshot(world.stack.engine, u) for u in (user, other)} == before


def test_one_user_lock_waits_then_gives_up_without_losing_the_transaction(world: World) -> None:
    from shared.db.repos import backup_data

    with session_scope(world.stack.sessions) as holder:
        assert backup_data.lock_user(holder, world.user, wait_s=1)
        with session_scope(world.stack.sessions) as waiter:
            waiter.execute(text("SELECT 1"))
            assert not backup_data.lock_user(waiter, world.user, wait_s=0.2)
            assert waiter.execute(text("SELECT 2")).scalar_one() == 2  # still usable
            assert backup_data.lock_user(waiter, world.bystander, wait_s=0.2)
    with session_scope(world.stack.sessions) as later:
        assert backup_data.lock_user(later, world.user, wait_s=0.2)
        assert later.execute(text("SHOW lock_timeout")).scalar_one() == "0"
