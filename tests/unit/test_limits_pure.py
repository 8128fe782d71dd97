"""Limits without services: payload work vs time limits, the decode semaphore, the pixel
limit, and which incoming objects the sweep removes.

Broken on purpose once each: without `decode_slot()` in render_thumbnails four decodes
overlapped; with the work check removed sleep_ms=600000 validated.
"""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from PIL import Image

from shared.config import Settings
from shared.errors import PermanentError
from shared.jobs.catalog import DIAG_NOOP
from shared.jobs.submit import declared_work_s, validate_payload
from shared.storage.base import ListedObject
from tests.support import media
from workers.thumbnails import decoding, render
from workers.uploads.errors import Rejected
from workers.uploads.metadata import open_image_header
from workers.uploads.policy import UploadPolicy
from workers.uploads.sweep import doomed


@pytest.mark.parametrize("sleep_ms", [60_000, 600_000])
def test_declared_work_at_or_over_the_time_limit_is_invalid(sleep_ms: int) -> None:
    with pytest.raises(PermanentError) as refused:
        validate_payload(DIAG_NOOP, {"sleep_ms": sleep_ms})
    assert refused.value.code == "invalid_payload"
    assert "time limit of 60 s" in refused.value.message


def test_declared_work_below_the_time_limit_is_valid() -> None:
    assert validate_payload(DIAG_NOOP, {"sleep_ms": 59_999})["sleep_ms"] == 59_999
    assert declared_work_s("diag.noop", {"sleep_ms": 1500}) == 1.5
    assert declared_work_s("image.thumbnail", {"file_id": str(uuid.uuid4())}) == 0.0


def test_two_decodes_in_one_process_never_overlap(monkeypatch: pytest.MonkeyPatch) -> None:
    """Four threads render at once; the fake decode records how many are inside it."""
    inside, most = 0, 0
    lock = threading.Lock()
    released = threading.Event()
    real_decode = render._decode

    def counting_decode(data: bytes, **kwargs: Any) -> Image.Image:
        nonlocal inside, most
        with lock:
            inside += 1
            most = max(most, inside)
        released.wait(0.2)  # give the others every chance to come in
        try:
            return real_decode(data, **kwargs)
        finally:
            with lock:
                inside -= 1

    monkeypatch.setattr(render, "_decode", counting_decode)
    decoding.set_decode_concurrency(1)
    photo = media.photo(300, 200)
    threads = [
        threading.Thread(
            target=render.render_thumbnails, args=(photo, (128,)), kwargs={"max_pixels": 10**8}
        )
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert most == 1


def test_decode_concurrency_is_configurable() -> None:
    decoding.set_decode_concurrency(3)
    try:
        held = [decoding.decode_slot() for _ in range(3)]
        for slot in held:
            slot.__enter__()
        assert not decoding._slots.acquire(blocking=False)  # a fourth would wait
        for slot in held:
            slot.__exit__(None, None, None)
    finally:
        decoding.set_decode_concurrency(1)


def test_the_default_pixel_limit_is_40_megapixels() -> None:
    assert Settings().image_max_pixels == 40_000_000 == UploadPolicy().max_pixels
    limit = Settings().image_max_pixels
    with pytest.raises(Rejected) as refused:  # the 9000x9000 PNG: refused unread
        open_image_header(media.bomb_png(9000, 9000), max_pixels=limit)
    assert refused.value.code == "bomb"
    assert open_image_header(media.bomb_png(8000, 5000), max_pixels=limit).size == (8000, 5000)


def _obj(key: str, age_s: float, now: datetime) -> ListedObject:
    return ListedObject(key, 0, now - timedelta(seconds=age_s))


def test_the_sweep_keeps_only_what_a_pending_upload_needs() -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    ids = {name: uuid.uuid4() for name in ("fresh", "abandoned", "queued", "done", "failed")}
    states: dict[uuid.UUID, str | None] = {
        ids["fresh"]: None,
        ids["abandoned"]: None,
        ids["queued"]: "queued",
        ids["done"]: "succeeded",
        ids["failed"]: "failed",
    }
    ages = {"fresh": 10, "abandoned": 7200, "queued": 10 * 86400, "done": 1, "failed": 1}
    objects = [_obj(f"uploads/{ids[n]}", age, now) for n, age in ages.items()]
    objects += [
        _obj(f"uploads/{uuid.uuid4()}", 10, now),
        _obj(f"uploads/{uuid.uuid4()}", 7200, now),
    ]
    objects += [_obj("uploads/not-a-uuid", 7200, now)]
    out = doomed(objects, states, now=now, grace=timedelta(hours=1))
    assert set(out) == {
        f"uploads/{ids['abandoned']}",
        f"uploads/{ids['done']}",
        f"uploads/{ids['failed']}",
        objects[-2].key,
        "uploads/not-a-uuid",
    }
