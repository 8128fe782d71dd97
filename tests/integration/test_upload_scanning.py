"""Malware scanning of uploads against a real clamd (custom test signature)."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator

import pytest
from PIL import Image

from shared.embedded import EmbeddedS3
from tests.support.clamd import MALWARE_MARKER, Clamd, start_clamd
from tests.support.services import wait_for
from tests.support.stack import Stack
from tests.support.uploads import leftovers, storage, upload

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def clamd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Clamd]:
    server = start_clamd(tmp_path_factory.mktemp("clamd"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def scanned(
    tmp_path_factory: pytest.TempPathFactory, s3_server: EmbeddedS3, clamd: Clamd
) -> Iterator[Stack]:
    stack = Stack.create(tmp_path_factory.mktemp("logs"), s3=s3_server)
    stack.start_scheduler()
    stack.start_worker("media", processes=1, threads=2, CONVEYOR_CLAMD_ADDRESS=clamd.address)
    yield stack
    stack.close()


def png(extra: bytes = b"") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (10, 120, 200)).save(buffer, "PNG")
    return buffer.getvalue() + extra  # bytes after IEND: still a valid PNG to every decoder


def test_clean_files_pass_the_scanner(scanned: Stack) -> None:
    sent = upload(scanned, f"u-{uuid.uuid4().hex[:6]}", "clean.png", "image/png", png())
    assert scanned.wait_state(sent.job_id).state == "succeeded"


def test_infected_file_is_refused_and_leaves_nothing(scanned: Stack) -> None:
    who = f"u-{uuid.uuid4().hex[:6]}"
    sent = upload(scanned, who, "cat.png", "image/png", png(MALWARE_MARKER))
    done = scanned.wait_state(sent.job_id)
    assert (done.state, done.error_code) == ("failed", "malware")
    assert "Conveyor.Test.Marker" in (done.error_message or "")
    assert leftovers(scanned, sent.upload_id) == []
    assert storage(scanned, who) == (0, 0)


def test_scanner_outage_retries_instead_of_letting_files_through(
    scanned: Stack, clamd: Clamd
) -> None:
    clamd.stop()
    sent = upload(scanned, f"u-{uuid.uuid4().hex[:6]}", "later.png", "image/png", png())

    def retried() -> bool:
        found = scanned.find_job(sent.job_id)
        return found is not None and found.attempt >= 1 and found.error_code == "transient"

    wait_for(retried, timeout=30, what="a transient failure scheduled for retry")
    assert scanned.job(sent.job_id).state in {"queued", "running"}
