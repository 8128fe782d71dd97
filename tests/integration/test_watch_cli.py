"""`conveyor status --watch` and `conveyor job ID --follow` as real processes (issue #13)."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.services import wait_for
from tests.support.stack import Stack

pytestmark = pytest.mark.integration


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    created = Stack.create(tmp_path)
    yield created
    created.close()


def _cli(stack: Stack, *args: str, out: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "workers.cli", *args],
        env=stack.env(COLUMNS="160"),
        stdout=out.open("wb"),
        stderr=subprocess.STDOUT,
    )


def test_job_follow_waits_for_the_end_and_shows_the_history(stack: Stack, tmp_path: Path) -> None:
    stack.start_scheduler()
    stack.start_worker("default", processes=1, threads=2)
    job = stack.submit(payload={"sleep_ms": 1500})
    out = tmp_path / "follow.txt"
    follow = _cli(stack, "job", job["id"], "--follow", out=out)
    assert follow.wait(timeout=90) == 0, out.read_text()
    text = out.read_text()
    assert "state=succeeded" in text
    assert "running" in text  # the transitions table
    assert stack.job(job["id"]).state == "succeeded"


def test_status_watch_redraws_until_interrupted(stack: Stack, tmp_path: Path) -> None:
    failed = stack.submit(payload={"fail_permanently": True})
    stack.start_scheduler()
    stack.start_worker("default", processes=1, threads=2)
    stack.wait_state(failed["id"], "failed", timeout=60)
    out = tmp_path / "watch.txt"
    watch = _cli(stack, "status", "--watch", "--interval", "0.5", out=out)
    # Not a terminal: each frame is printed; two frames mean it redraws.
    wait_for(lambda: out.read_text().count("pools at") >= 2, timeout=60, what="two frames")
    watch.send_signal(signal.SIGINT)
    assert watch.wait(timeout=30) == 0, out.read_text()
    text = out.read_text()
    assert "pools at" in text and "default" in text
    assert "diag.noop" in text and "injected" in text  # kinds and the recent failure
    assert "1 leader(s)" in text
