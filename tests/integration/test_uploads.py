"""Uploads on real SeaweedFS, PostgreSQL and RabbitMQ, through real worker processes."""

from __future__ import annotations

import hashlib
import io
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest
from PIL import Image

from shared.db.engine import session_scope
from shared.db.models import Upload
from shared.db.repos import files as files_repo
from shared.embedded import EmbeddedS3
from shared.storage.buckets import Bucket, bucket_name, incoming_key
from tests.support import media
from tests.support.services import wait_for
from tests.support.stack import Stack
from tests.support.uploads import (
    file_row,
    get,
    jobs_for_file,
    leftovers,
    start_media_stack,
    storage,
    upload,
)
from workers.uploads.policy import UploadPolicy
from workers.uploads.service import process_upload

pytestmark = pytest.mark.integration

QUOTA = 3_000_000


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory, s3_server: EmbeddedS3) -> Iterator[Stack]:
    stack = start_media_stack(
        tmp_path_factory.mktemp("logs"), s3_server, threads=4, CONVEYOR_USER_QUOTA_BYTES=str(QUOTA)
    )
    yield stack
    stack.close()


def user() -> str:
    return f"user-{uuid.uuid4().hex[:8]}"


def thumbnails_done(stack: Stack, file_id: str) -> str:
    wait_for(lambda: jobs_for_file(stack, "image.thumbnail", file_id), what="thumbnail job")
    [job] = jobs_for_file(stack, "image.thumbnail", file_id)
    done = stack.wait_state(job.id)
    return done.error_code or done.state


def test_photo_is_filed_with_metadata_thumbnails_and_urls(files: Stack) -> None:
    who, data = user(), media.photo(2000, 1500)
    sent = upload(files, who, "holiday.JPG", "image/jpeg", data)
    assert files.wait_state(sent.job_id).state == "succeeded"

    row = file_row(files, sent.upload_id)
    assert row is not None and row.category == "images" and row.size == len(data)
    assert row.sha256 == hashlib.sha256(data).hexdigest()
    assert row.meta["width"] == 2000 and "GPSInfo" not in row.meta["exif"]
    assert storage(files, who) == (len(data), 1)
    assert thumbnails_done(files, sent.upload_id) == "succeeded"

    detail = get(files, f"/v1/files/{sent.upload_id}")
    assert httpx.get(detail["download_url"], timeout=60).content == data
    thumb = Image.open(io.BytesIO(httpx.get(detail["thumbnail_urls"]["1024"], timeout=60).content))
    assert (thumb.format, thumb.size) == ("WEBP", (1024, 768))
    assert [f["id"] for f in get(files, f"/v1/files?user_id={who}")["files"]] == [sent.upload_id]
    assert get(files, f"/v1/users/{who}/storage")["bytes_used"] == len(data)
    assert not any(
        p.startswith("incoming/") or "uploads/" in p for p in leftovers(files, sent.upload_id)
    )


@pytest.mark.parametrize(
    ("name", "content_type", "data", "size", "mode"),
    [
        ("rotated.jpg", "image/jpeg", media.photo(400, 200, orientation=6), (200, 400), "RGB"),
        ("alpha.png", "image/png", media.png_with_alpha(), (300, 300), "RGBA"),
        ("cmyk.jpg", "image/jpeg", media.cmyk_jpeg(), (400, 300), "RGB"),
        ("anim.gif", "image/gif", media.animated_gif(), (200, 200), "RGB"),
    ],
)
def test_image_variants_get_thumbnails(
    files: Stack, name: str, content_type: str, data: bytes, size: tuple[int, int], mode: str
) -> None:
    sent = upload(files, user(), name, content_type, data)
    assert files.wait_state(sent.job_id).state == "succeeded"
    assert thumbnails_done(files, sent.upload_id) == "succeeded"
    detail = get(files, f"/v1/files/{sent.upload_id}")
    thumb = Image.open(io.BytesIO(httpx.get(detail["thumbnail_urls"]["1024"], timeout=60).content))
    assert (thumb.size, thumb.mode) == (size, mode)


@pytest.mark.parametrize(
    ("name", "content_type", "make", "reason"),
    [
        ("bomb.png", "image/png", media.bomb_png, "bomb"),
        ("huge.jpg", "image/jpeg", lambda: media.jpeg_claiming(60_000, 60_000), "bomb"),
        ("report.jpg", "image/jpeg", media.pdf, "type_mismatch"),
        ("cat.png", "image/png", media.elf_executable, "type_not_allowed"),
        ("bomb.zip", "application/zip", media.zip_bomb, "bomb"),
        ("big.zip", "application/zip", lambda: b"\0" * (50 * 1024 * 1024 + 1), "too_large"),
    ],
)
def test_rejections_leave_nothing_behind(
    files: Stack, name: str, content_type: str, make: object, reason: str
) -> None:
    who = user()
    data = make()  # type: ignore[operator]
    if len(data) > 50 * 1024 * 1024:  # the ingress refuses an honest declaration up front
        body = {"user_id": who, "filename": name, "content_type": content_type, "size": len(data)}
        early = files.client.post("/v1/uploads", json=body, headers=files.headers())
        assert (early.status_code, early.json()["code"]) == (413, "too_large")
    # Too large: declare a small size and put the bytes past the store's POST policy (which
    # would refuse them): the worker must check the real object, not the declaration.
    declared = len(data) if len(data) <= 50 * 1024 * 1024 else 1024
    sent = upload(files, who, name, content_type, data, declared_size=declared)
    job = files.wait_state(sent.job_id)
    assert (job.state, job.error_code) == ("failed", reason)
    assert file_row(files, sent.upload_id) is None
    assert storage(files, who) == (0, 0)
    assert leftovers(files, sent.upload_id) == []


def test_truncated_jpeg_is_filed_but_thumbnails_fail_as_corrupt(files: Stack) -> None:
    sent = upload(files, user(), "cut.jpg", "image/jpeg", media.truncated_jpeg())
    assert files.wait_state(sent.job_id).state == "succeeded"
    assert thumbnails_done(files, sent.upload_id) == "corrupt"
    assert not any("thumbnails/" in p for p in leftovers(files, sent.upload_id))


def test_hostile_file_names_are_sanitized(files: Stack) -> None:
    # A NUL is refused before this point (422, tests/integration/test_hostile_input.py).
    hostile = "../../etc/\u202egpj.exe\u200b/e\u0301vil\x07name.jpg"
    sent = upload(files, user(), hostile, "image/jpeg", media.photo(64, 64))
    assert files.wait_state(sent.job_id).state == "succeeded"
    row = file_row(files, sent.upload_id)
    assert row is not None and row.name == "\u00e9vilname.jpg"
    assert row.key == f"files/{sent.upload_id}"  # names never reach object keys


def test_over_quota_is_refused_and_counts_nothing(files: Stack) -> None:
    who = user()
    first = upload(files, who, "a.zip", "application/zip", media.plain_zip(os.urandom(2_000_000)))
    assert files.wait_state(first.job_id).state == "succeeded"
    used = storage(files, who)
    second = upload(files, who, "b.zip", "application/zip", media.plain_zip(os.urandom(2_000_000)))
    job = files.wait_state(second.job_id)
    assert (job.state, job.error_code) == ("failed", "quota_exceeded")
    assert storage(files, who) == used
    assert leftovers(files, second.upload_id) == []


def test_delete_twice_releases_storage_once(files: Stack) -> None:
    who = user()
    sent = upload(files, who, "p.jpg", "image/jpeg", media.photo(300, 200))
    files.wait_state(sent.job_id)
    assert thumbnails_done(files, sent.upload_id) == "succeeded"
    path = f"/v1/files/{sent.upload_id}"
    first = files.client.delete(path, headers=files.headers())
    second = files.client.delete(path, headers=files.headers())
    assert first.status_code == 202
    # The first delete is committed before its 202, so its job may already have removed the
    # file when the second request arrives (404); while it is pending, the same job answers.
    assert second.status_code in (202, 404), second.text
    if second.status_code == 202:
        assert first.json()["job_id"] == second.json()["job_id"]
    assert files.wait_state(first.json()["job_id"]).state == "succeeded"
    again = files.submit_internal("file.delete", {"file_id": sent.upload_id}, user_id=who)
    assert files.wait_state(again["id"]).result == {"file_id": sent.upload_id, "released_bytes": 0}
    assert storage(files, who) == (0, 0)
    assert leftovers(files, sent.upload_id) == []
    assert files.client.get(path, headers=files.headers()).status_code == 404


def test_redelivered_processing_does_not_double_count(files: Stack) -> None:
    who = user()
    sent = upload(files, who, "p.png", "image/png", media.png_with_alpha(64))
    files.wait_state(sent.job_id)
    counted = storage(files, who)
    again = files.submit_internal("upload.process", {"upload_id": sent.upload_id}, user_id=who)
    assert files.wait_state(again["id"]).state == "succeeded"
    assert storage(files, who) == counted
    assert len(jobs_for_file(files, "image.thumbnail", sent.upload_id)) == 1


def put_incoming(files: Stack, who: str, data: bytes) -> tuple[uuid.UUID, str]:
    """An upload row and its bytes in the incoming bucket, as a client's PUT leaves them
    (no upload.process job yet). Returns the upload id and the incoming bucket's name."""
    upload_id = uuid.uuid4()
    with session_scope(files.sessions) as session:
        files_repo.add_upload(
            session,
            Upload(
                id=upload_id,
                user_id=who,
                filename="c.jpg",
                declared_type="image/jpeg",
                declared_size=len(data),
                incoming_key=incoming_key(upload_id),
            ),
        )
    incoming = bucket_name(files.bucket_prefix, Bucket.INCOMING)
    files.store.put_bytes(incoming, incoming_key(upload_id), data)
    return upload_id, incoming


def test_jobs_naming_another_user_touch_nothing(files: Stack) -> None:
    """upload.process and image.thumbnail for a user who does not own the upload or file:
    `not_found`, nothing moved. Broken on purpose (each owner check removed in turn, in
    uploads/service.py and thumbnails/service.py): this failed at that kind's assertion."""
    who, mallory, data = user(), user(), media.photo(100, 100)
    upload_id, incoming = put_incoming(files, who, data)
    job = files.submit_internal("upload.process", {"upload_id": str(upload_id)}, user_id=mallory)
    done = files.wait_state(job["id"])
    assert (done.state, done.error_code) == ("failed", "not_found")
    assert file_row(files, str(upload_id)) is None
    assert files.store.get_bytes(incoming, incoming_key(upload_id)) == data  # not consumed
    assert storage(files, mallory) == storage(files, who) == (0, 0)

    sent = upload(files, who, "p.jpg", "image/jpeg", media.photo(200, 100))
    files.wait_state(sent.job_id)
    job = files.submit_internal("image.thumbnail", {"file_id": sent.upload_id}, user_id=mallory)
    done = files.wait_state(job["id"])
    assert (done.state, done.error_code) == ("failed", "not_found")


def test_crash_before_commit_then_redeliveries_count_once(files: Stack) -> None:
    who, data = user(), media.photo(100, 100)
    upload_id, _ = put_incoming(files, who, data)
    policy = UploadPolicy(bucket_prefix=files.bucket_prefix, quota_bytes=QUOTA)
    now = datetime.now(UTC)

    crashed = files.sessions()
    process_upload(crashed, files.store, policy, upload_id=upload_id, user_id=who, now=now)
    crashed.rollback()  # filed and incoming deleted, but the transaction never committed
    crashed.close()
    assert storage(files, who) == (0, 0)

    for _ in range(2):  # the redelivery, then a duplicate of it
        with session_scope(files.sessions) as session:
            result = process_upload(
                session, files.store, policy, upload_id=upload_id, user_id=who, now=now
            )
    assert result["sha256"] == hashlib.sha256(data).hexdigest()
    assert storage(files, who) == (len(data), 1)
    assert len(jobs_for_file(files, "image.thumbnail", str(upload_id))) == 1


def test_audio_is_filed_with_its_duration(files: Stack) -> None:
    import wave

    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes(b"\x01\x00" * 16000 * 2)
    data = buffer.getvalue()
    sent = upload(files, user(), "voice-note.wav", "audio/wav", data)
    assert files.wait_state(sent.job_id).state == "succeeded", files.job(sent.job_id).error_code
    row = file_row(files, sent.upload_id)
    assert row is not None and row.category == "audio"
    assert row.meta["duration_s"] == 2.0
