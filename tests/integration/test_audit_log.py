"""The audit log: each security-relevant HTTP action leaves exactly one event, which admins
read through GET /v1/audit (filters, cursor) and `conveyor audit`. Key actions (CLI) are in
test_api_keys.py, OAuth connect/revoke/token read in test_oauth_connections.py."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from shared.db.engine import session_scope
from shared.db.models import AuditEvent, Backup, Export, StoredFile
from shared.embedded import EmbeddedS3
from shared.storage.buckets import Bucket, bucket_name
from tests.support.stack import Stack

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def audited(tmp_path_factory: pytest.TempPathFactory, s3_server: EmbeddedS3) -> Iterator[Stack]:
    stack = Stack.create(tmp_path_factory.mktemp("logs"), s3=s3_server)
    yield stack
    stack.close()


def events_for(stack: Stack, target: str) -> list[AuditEvent]:
    with session_scope(stack.sessions) as session:
        stmt = select(AuditEvent).where(AuditEvent.target == target).order_by(AuditEvent.id)
        return list(session.execute(stmt).scalars())


def key_id(stack: Stack) -> uuid.UUID:
    from shared.db.repos import api_keys as api_keys_repo

    with session_scope(stack.sessions) as session:
        key = api_keys_repo.authenticate(session, stack.token)
        assert key is not None
        return key.id


def add_file(stack: Stack) -> StoredFile:
    file = StoredFile(
        id=uuid.uuid4(),
        user_id="audit-user",
        api_key_id=key_id(stack),
        name="a.txt",
        category="documents",
        content_type="text/plain",
        size=3,
        sha256="0" * 64,
        bucket=bucket_name(stack.bucket_prefix, Bucket.DOCUMENTS),
        key=f"audit/{uuid.uuid4()}",
        meta={},
    )
    with session_scope(stack.sessions) as session:
        session.add(file)
    return file


def test_file_delete_leaves_exactly_one_event(audited: Stack) -> None:
    """A repeated DELETE answers with the same job and records nothing more.
    (Broken on purpose once by recording before the `created` check: two events, failed.)"""
    file = add_file(audited)
    first = audited.client.delete(f"/v1/files/{file.id}", headers=audited.headers())
    again = audited.client.delete(f"/v1/files/{file.id}", headers=audited.headers())
    assert first.status_code == again.status_code == 202, first.text
    [event] = events_for(audited, f"file:{file.id}")
    assert event.action == "file.delete_requested"
    assert event.actor == "api" and event.actor_key_id == key_id(audited)
    assert event.user_id == "audit-user" and event.tenant_id == "default"
    assert event.details == {"job_id": first.json()["job_id"]}


def test_backup_restore_leaves_exactly_one_event(audited: Stack) -> None:
    backup = Backup(
        id=uuid.uuid4(),
        user_id=uuid.uuid4(),
        api_key_id=key_id(audited),
        requested_type="full",
        type="full",
        data_types=["messages"],
        status="completed",
    )
    with session_scope(audited.sessions) as session:
        session.add(backup)
    response = audited.client.post(
        f"/v1/backups/{backup.id}/restore", json={"dry_run": True}, headers=audited.headers()
    )
    assert response.status_code == 202, response.text
    [event] = events_for(audited, f"backup:{backup.id}")
    assert event.action == "backup.restore_requested"
    assert event.details == {
        "job_id": response.json()["job_id"],
        "mode": "replace",
        "dry_run": True,
    }


def test_export_download_link_leaves_one_event_per_link_issued(audited: Stack) -> None:
    export = Export(
        id=uuid.uuid4(),
        user_id="audit-user",
        api_key_id=key_id(audited),
        request={},
        status="ready",
        bucket=bucket_name(audited.bucket_prefix, Bucket.EXPORTS),
        key=f"audit/{uuid.uuid4()}.csv",
        filename="x.csv",
        expires_at=datetime.now(UTC) + timedelta(days=1),
    )
    with session_scope(audited.sessions) as session:
        session.add(export)
    response = audited.client.get(f"/v1/exports/{export.id}", headers=audited.headers())
    assert response.status_code == 200, response.text
    assert response.json()["download_url"]
    [event] = events_for(audited, f"export:{export.id}")
    assert event.action == "export.link_issued" and event.details == {}
    assert "X-Amz-Signature" not in str(event.details)  # the link itself is a secret


def test_admins_page_through_the_log_with_filters(audited: Stack) -> None:
    files = [add_file(audited) for _ in range(3)]
    for file in files:
        audited.client.delete(f"/v1/files/{file.id}", headers=audited.headers())
    admin = audited.headers(audited.new_api_key(admin=True))
    seen: list[str] = []
    cursor = None
    while True:
        params = {"action": "file", "limit": 2, **({"cursor": cursor} if cursor else {})}
        page = audited.client.get("/v1/audit", params=params, headers=admin)
        assert page.status_code == 200, page.text
        seen += [e["target"] for e in page.json()["events"]]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen))  # no event twice across pages
    assert {f"file:{f.id}" for f in files} <= set(seen)
    assert all(t.startswith("file:") for t in seen)
    one = audited.client.get("/v1/audit", params={"target": f"file:{files[0].id}"}, headers=admin)
    assert [e["action"] for e in one.json()["events"]] == ["file.delete_requested"]
    reader = audited.headers(audited.new_api_key(scopes=["read"]))
    assert audited.client.get("/v1/audit", headers=reader).status_code == 403


def test_conveyor_audit_shows_the_events(audited: Stack) -> None:
    file = add_file(audited)
    audited.client.delete(f"/v1/files/{file.id}", headers=audited.headers())
    result = audited.cli("audit", "--target", f"file:{file.id}", COLUMNS="250")
    assert result.returncode == 0, result.stderr
    assert "file.delete_requested" in result.stdout and "1 event(s)" in result.stdout
