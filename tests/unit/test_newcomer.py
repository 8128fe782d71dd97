"""Issue 14, pure parts: unknown settings, error field paths, request hashes, the dev env file."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from shared.config import unknown_variables
from shared.jobs.submit import NewJob
from workers.cli import devstate
from workers.ingress.errors import field_path


def test_a_misspelled_variable_is_named_with_the_closest_setting() -> None:
    lines = unknown_variables(
        {"CONVEYOR_DATABSE_URL": "x", "CONVEYOR_DATABASE_URL": "y", "CONVEYOR_ZZZ": "1", "PATH": ""}
    )
    assert lines == [
        "warning: CONVEYOR_DATABSE_URL is not a Conveyor setting and is ignored "
        "(did you mean CONVEYOR_DATABASE_URL?)",
        "warning: CONVEYOR_ZZZ is not a Conveyor setting and is ignored",
    ]
    assert unknown_variables({"CONVEYOR_TEST_PG_URL": "x", "CONVEYOR_DATA_DIR": "d"}) == []


@pytest.mark.parametrize(
    ("loc", "expected"),
    [
        (("body", "jobs", 3, "run_at"), "jobs[3].run_at"),
        (("body", "user_id"), "user_id"),
        (("query", "state"), "state"),
        (("body",), "body"),
    ],
)
def test_field_paths_read_like_the_request(loc: tuple[int | str, ...], expected: str) -> None:
    assert field_path(loc) == expected


def test_request_hash_covers_what_was_asked_and_keeps_a_delay_relative() -> None:
    base = NewJob("diag.noop", "u", {"sleep_ms": 1}, delay_s=60)
    assert (
        base.request_hash() == NewJob("diag.noop", "u", {"sleep_ms": 1}, delay_s=60).request_hash()
    )
    for other in (
        NewJob("diag.noop", "u", {"sleep_ms": 2}, delay_s=60),
        NewJob("diag.noop", "v", {"sleep_ms": 1}, delay_s=60),
        NewJob("diag.noop", "u", {"sleep_ms": 1}, delay_s=61),
        NewJob("diag.noop", "u", {"sleep_ms": 1}, run_at=datetime(2027, 1, 1, tzinfo=UTC)),
    ):
        assert other.request_hash() != base.request_hash()


def test_the_dev_env_file_fills_only_unset_variables_and_can_be_undone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONVEYOR_DATABASE_URL", "postgresql://u@/db?host=/tmp/a b")
    monkeypatch.setenv("CONVEYOR_MASTER_KEYS", "dev1:abc+/=")
    devstate.write_env(tmp_path)
    assert (tmp_path / "env").stat().st_mode & 0o077 == 0
    monkeypatch.delenv("CONVEYOR_DATABASE_URL")
    monkeypatch.setenv("CONVEYOR_MASTER_KEYS", "mine:1")
    assert devstate.load_dev_env(tmp_path) == tmp_path / "env"
    assert os.environ["CONVEYOR_DATABASE_URL"] == "postgresql://u@/db?host=/tmp/a b"
    assert os.environ["CONVEYOR_MASTER_KEYS"] == "mine:1"  # the environment wins
    devstate.unload_dev_env()
    assert "CONVEYOR_DATABASE_URL" not in os.environ
    devstate.remove_env(tmp_path)
    assert devstate.load_dev_env(tmp_path) is None


def test_a_second_lock_reports_the_running_instance(tmp_path: Path) -> None:
    held = devstate.acquire_lock(tmp_path)
    devstate.write_info(tmp_path, "http://127.0.0.1:8123")
    with pytest.raises(
        devstate.AlreadyRunning, match=r"already running at http://127\.0\.0\.1:8123"
    ):
        devstate.acquire_lock(tmp_path)
    held.close()
    devstate.acquire_lock(tmp_path).close()


def test_the_dev_key_ring_is_generated_once_and_parses(tmp_path: Path) -> None:
    from shared.crypto import KeyRing

    ring = devstate.dev_master_keys(tmp_path)
    assert devstate.dev_master_keys(tmp_path) == ring
    KeyRing.parse(ring)


def test_thumbnail_status_pending_ready_failed_none() -> None:
    from workers.uploads.thumbnail_status import thumbnail_job_id, thumbnail_status

    file_id = uuid.uuid4()
    job_id = thumbnail_job_id(file_id)
    assert thumbnail_job_id(file_id) == job_id  # deterministic: the upload result can name it

    def status(**kw: object) -> tuple[str, uuid.UUID | None, str | None]:
        args: dict[str, Any] = {"file_id": file_id, "is_image": True, "has_thumbnails": False}
        found = thumbnail_status(**{**args, "job_state": None, "job_error": None, **kw})
        return found.status, found.job_id, found.reason

    assert status(job_state="queued") == ("pending", job_id, None)
    assert status(job_state="running") == ("pending", job_id, None)
    assert status(job_state="failed", job_error="corrupt") == ("failed", job_id, "corrupt")
    assert status(job_state="dead", job_error=None) == ("failed", job_id, "dead")
    assert status(job_state="succeeded", has_thumbnails=True) == ("ready", job_id, None)
    assert status(is_image=False) == ("none", None, None)


def test_the_cli_finds_the_env_file_from_a_subfolder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".conveyor").mkdir()
    (tmp_path / ".conveyor" / "env").write_text("export CONVEYOR_PUBLIC_URL=http://x\n")
    (tmp_path / "a" / "b").mkdir(parents=True)
    monkeypatch.delenv("CONVEYOR_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path / "a" / "b")
    assert devstate.find_env_file() == tmp_path / ".conveyor" / "env"
    monkeypatch.setenv("CONVEYOR_DATA_DIR", str(tmp_path / "elsewhere"))
    assert devstate.find_env_file() is None
