"""Uploads bound by the store itself (a POST policy on real SeaweedFS), a lying client caught
by the worker, and the sweep of incoming objects nobody needs (issue #12, deliverable 4).

Reproductions from the issue: a 60 MiB PUT for a declared 10-byte upload was accepted, and
so was a PUT after the upload had been processed. Broken on purpose once each: without the
content-length-range condition the 60 MiB POST was a 204; with `keep = True` for processed
uploads the replayed object survived the sweep.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from shared.db.engine import session_scope
from shared.db.repos import files as files_repo
from shared.embedded import EmbeddedS3
from shared.jobs.submit import NewJob, submit_jobs
from shared.storage.buckets import Bucket, bucket_name
from tests.support import media
from tests.support.stack import Stack
from tests.support.uploads import exists, file_row, post_upload, start_media_stack, upload
from workers.uploads.sweep import sweep_once

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory, s3_server: EmbeddedS3) -> Iterator[Stack]:
    stack = start_media_stack(tmp_path_factory.mktemp("logs"), s3_server, threads=2)
    yield stack
    stack.close()


def start(stack: Stack, size: int, content_type: str = "image/png") -> dict[str, str]:
    body = {"user_id": "u-limits", "filename": "a.png", "content_type": content_type, "size": size}
    started = stack.client.post("/v1/uploads", json=body, headers=stack.headers())
    assert started.status_code == 201, started.text
    return dict(started.json())


def incoming_has(stack: Stack, upload_id: str) -> bool:
    return exists(stack, Bucket.INCOMING, f"uploads/{upload_id}")


def test_the_store_refuses_a_body_bigger_or_smaller_than_declared(files: Stack) -> None:
    started = start(files, size=10)
    oversized = post_upload(started, b"x" * (60 * 1024 * 1024))
    assert oversized.status_code == 400 and "EntityTooLarge" in oversized.text
    undersized = post_upload(started, b"x" * 9)
    assert undersized.status_code == 400 and "EntityTooSmall" in undersized.text
    assert not incoming_has(files, started["upload_id"])
    assert post_upload(started, b"x" * 10).status_code == 204
    assert incoming_has(files, started["upload_id"])


def test_the_store_refuses_another_type_or_key(files: Stack) -> None:
    started = start(files, size=10)
    other_type = post_upload(started, b"x" * 10, **{"Content-Type": "text/html"})
    assert other_type.status_code == 403
    other_key = post_upload(started, b"x" * 10, key=f"uploads/{uuid.uuid4()}")
    assert other_key.status_code == 403
    assert not incoming_has(files, started["upload_id"])


def test_a_lying_client_is_refused_by_the_worker(files: Stack) -> None:
    """Bytes that got past the policy (written straight to the bucket) one byte longer than
    declared: the job fails with size_mismatch and files nothing."""
    data = media.photo(200, 100)
    sent = upload(files, "u-liar", "p.jpg", "image/jpeg", data, declared_size=len(data) - 1)
    job = files.wait_state(sent.job_id)
    assert (job.state, job.error_code) == ("failed", "size_mismatch")
    assert file_row(files, sent.upload_id) is None
    assert not incoming_has(files, sent.upload_id)


def sweep(stack: Stack, *, later_s: float) -> int:
    bucket = bucket_name(stack.bucket_prefix, Bucket.INCOMING)
    now = datetime.now(UTC) + timedelta(seconds=later_s)
    with session_scope(stack.sessions) as session:
        return sweep_once(session, stack.store, bucket, now=now, grace=timedelta(hours=1))


def test_the_sweep_removes_replays_abandoned_and_orphaned_objects_only(files: Stack) -> None:
    data = media.photo(120, 80)
    processed = upload(files, "u-sweep", "p.jpg", "image/jpeg", data)
    assert files.wait_state(processed.job_id).state == "succeeded"
    # The replay: the same presigned POST again, after processing deleted the object.
    replayed = start(files, size=len(data), content_type="image/jpeg")
    assert post_upload(replayed, data).status_code == 204
    abandoned = start(files, size=3)
    assert post_upload(abandoned, b"abc").status_code == 204
    orphan = f"uploads/{uuid.uuid4()}"
    files.store.put_bytes(bucket_name(files.bucket_prefix, Bucket.INCOMING), orphan, b"o")
    # `replayed` here stands for a fresh, not yet completed upload: young objects stay.
    sweep(files, later_s=0)
    assert incoming_has(files, replayed["upload_id"]) and incoming_has(
        files, abandoned["upload_id"]
    )

    files.store.put_bytes(  # the replay of the processed upload's own policy
        bucket_name(files.bucket_prefix, Bucket.INCOMING), f"uploads/{processed.upload_id}", data
    )
    sweep(files, later_s=0)
    assert not incoming_has(files, processed.upload_id)  # processed: removed at once

    sweep(files, later_s=2 * 3600)
    assert not incoming_has(files, abandoned["upload_id"])
    assert not incoming_has(files, replayed["upload_id"])
    assert not exists(files, Bucket.INCOMING, orphan)


def test_an_object_waiting_for_its_job_is_kept_however_old(files: Stack) -> None:
    """complete was called (job queued); the sweep must not pull the bytes from under it."""
    started = start(files, size=3)
    assert post_upload(started, b"abc").status_code == 204
    with session_scope(files.sessions) as session:
        row = files_repo.get_upload(session, uuid.UUID(started["upload_id"]))
        assert row is not None
        # Delayed a day: it stays queued for the whole test.
        new = NewJob("upload.process", row.user_id, {"upload_id": str(row.id)}, delay_s=86400)
        [outcome] = submit_jobs(session, [new], source="test")
        row.job_id = outcome.job_id
    sweep(files, later_s=10 * 86400)
    assert incoming_has(files, started["upload_id"])


def test_migrate_sets_the_incoming_lifecycle_backstop(files: Stack) -> None:
    from workers.cli.run import expire_abandoned_uploads

    expire_abandoned_uploads(files.settings())
    bucket = bucket_name(files.bucket_prefix, Bucket.INCOMING)
    config = files.store._client.get_bucket_lifecycle(bucket)
    assert config is not None
    [rule] = config.rules
    assert rule.rule_filter is not None and rule.rule_filter.prefix == "uploads/"
    assert rule.expiration is not None and rule.expiration.days == 2
