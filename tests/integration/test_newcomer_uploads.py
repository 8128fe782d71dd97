"""Issue 14, uploads: refused types at presign, a retryable complete, thumbnail status, cursor."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from shared.embedded import EmbeddedS3
from tests.integration.test_newcomer_api import assert_error
from tests.support import media
from tests.support.stack import Stack
from tests.support.uploads import post_upload, start_media_stack, upload

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory, s3_server: EmbeddedS3) -> Iterator[Stack]:
    stack = start_media_stack(tmp_path_factory.mktemp("logs"), s3_server, threads=2)
    yield stack
    stack.close()


def file_view(stack: Stack, file_id: str) -> dict[str, Any]:
    response = stack.client.get(f"/v1/files/{file_id}", headers=stack.headers())
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_presign_refuses_a_type_that_would_be_refused_after_upload(files: Stack) -> None:
    body = {"user_id": "u", "filename": "setup.exe", "size": 100}
    refused = files.client.post(
        "/v1/uploads",
        json={**body, "content_type": "application/x-msdownload"},
        headers=files.headers(),
    )
    assert_error(refused, 422, "type_not_allowed", "application/x-msdownload")


def test_complete_before_the_put_is_a_retryable_409(files: Stack) -> None:
    data = b"%PDF-1.4\n" + b"0" * 100
    body = {"user_id": "u", "filename": "a.pdf", "content_type": "application/pdf"}
    started = files.client.post(
        "/v1/uploads", json={**body, "size": len(data)}, headers=files.headers()
    )
    assert started.status_code == 201, started.text
    upload_id = started.json()["upload_id"]
    early = files.client.post(f"/v1/uploads/{upload_id}/complete", headers=files.headers())
    assert_error(early, 409, "not_uploaded", "finish the upload")
    assert post_upload(started.json(), data).status_code == 204
    done = files.client.post(f"/v1/uploads/{upload_id}/complete", headers=files.headers())
    assert done.status_code == 202, done.text
    assert files.job(done.json()["job_id"]).kind == "upload.process"


def test_thumbnail_status_tells_ready_from_failed_and_the_result_names_the_job(
    files: Stack,
) -> None:
    user = f"thumbs-{uuid.uuid4().hex[:6]}"
    good = upload(files, user, "photo.jpg", "image/jpeg", media.photo())
    bad = upload(files, user, "broken.jpg", "image/jpeg", media.truncated_jpeg())
    outcomes = {}
    for sent in (good, bad):
        job = files.wait_state(sent.job_id, timeout=90)
        assert job.state == "succeeded", job.error_message
        assert job.result is not None
        thumbnail_job = job.result["thumbnail_job_id"]
        files.wait_state(thumbnail_job, timeout=90)
        outcomes[sent.upload_id] = (thumbnail_job, file_view(files, sent.upload_id)["thumbnails"])
    good_job, good_status = outcomes[good.upload_id]
    assert good_status == {"status": "ready", "job_id": good_job, "reason": None}
    bad_job, bad_status = outcomes[bad.upload_id]
    assert bad_status == {"status": "failed", "job_id": bad_job, "reason": "corrupt"}


def test_files_page_with_a_cursor(files: Stack) -> None:
    user = f"pages-{uuid.uuid4().hex[:6]}"
    sent = [upload(files, user, f"doc{i}.pdf", "application/pdf", media.pdf()) for i in range(5)]
    for item in sent:
        assert files.wait_state(item.job_id, timeout=90).state == "succeeded"
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"user_id": user, "limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = files.client.get("/v1/files", params=params, headers=files.headers()).json()
        seen += [f["id"] for f in page["files"]]
        assert all(f["thumbnails"]["status"] == "none" for f in page["files"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(s.upload_id for s in sent) and len(seen) == 5
    bad = files.client.get(
        "/v1/files", params={"user_id": user, "cursor": "x"}, headers=files.headers()
    )
    assert_error(bad, 400, "bad_cursor")
