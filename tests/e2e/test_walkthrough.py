"""A newcomer's first hour, scripted: README's `scripts/dev`, the banner, docs/api.md examples.

Runs from this checkout rather than a fresh clone (a clone would need its own virtualenv:
minutes of installing), but the way the README says: `scripts/dev` on embedded defaults —
no CONVEYOR_* variable set, no broker, PostgreSQL and S3 from wheels — with the data
directory in a temporary folder so a developer's own `.conveyor/` is left alone.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.embedded import free_port
from tests.support.dev import READY, clean_env
from tests.support.services import wait_for

ROOT = Path(__file__).resolve().parents[2]


def api_examples() -> list[str]:
    text = (ROOT / "docs" / "api.md").read_text()
    examples = text.split("## Examples", 1)[1]
    return re.findall(r"```bash\n(.*?)```", examples, re.DOTALL)


class Walkthrough:
    def __init__(self, tmp: Path) -> None:
        self.data = tmp / ".conveyor"
        self.port = free_port()
        self.log = tmp / "scripts-dev.log"
        self.env = clean_env(CONVEYOR_DATA_DIR=str(self.data))
        self.process = subprocess.Popen(
            [str(ROOT / "scripts" / "dev"), "--port", str(self.port)],
            env=self.env,
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def ready(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"scripts/dev exited:\n{self.output()[-3000:]}")
        return READY in self.output()

    def conveyor(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(ROOT / ".venv" / "bin" / "conveyor"), *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)  # Ctrl-C in the terminal
            try:
                self.process.wait(120)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)


@pytest.fixture(scope="module")
def walk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Walkthrough]:
    walkthrough = Walkthrough(tmp_path_factory.mktemp("fresh"))
    try:
        wait_for(walkthrough.ready, timeout=300, interval=0.1, what="the scripts/dev banner")
        yield walkthrough
    finally:
        walkthrough.stop()


def test_the_banner_example_works_when_pasted_at_once(walk: Walkthrough) -> None:
    found = re.search(r"^  (curl .*)$", walk.output(), re.MULTILINE)
    assert found, walk.output()
    pasted = subprocess.run(found.group(1), shell=True, capture_output=True, text=True, timeout=30)
    assert pasted.returncode == 0, pasted.stderr
    job = json.loads(pasted.stdout)
    assert job["kind"] == "diag.noop" and job["state"] == "queued"

    def succeeded() -> bool:
        return "state=succeeded" in walk.conveyor("job", job["id"]).stdout

    wait_for(succeeded, timeout=60, interval=0.5, what="the pasted job to succeed")


@pytest.mark.parametrize("index", range(len(api_examples())))
def test_docs_api_examples_run_as_written(walk: Walkthrough, index: int) -> None:
    key = re.search(r"API key: (cvk_\S+)", walk.output())
    assert key, walk.output()
    env = {**walk.env, "URL": f"http://127.0.0.1:{walk.port}", "KEY": key.group(1)}
    script = "set -euo pipefail\n" + api_examples()[index]
    result = subprocess.run(
        ["bash", "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    documented = set(re.findall(r"`([a-z_]+)`", (ROOT / "docs" / "api.md").read_text()))
    for body in json_objects(result.stdout):
        if "code" in body:  # an error: in the documented shape, with a documented code
            assert set(body) == {"code", "message"} and body["code"] in documented, body
            assert body["code"] != "internal_error", body


def json_objects(text: str) -> list[dict[str, object]]:
    """Every JSON object curl printed (responses follow each other without newlines)."""
    decoder, found, at = json.JSONDecoder(), [], 0
    while (at := text.find("{", at)) != -1:
        try:
            value, end = decoder.raw_decode(text, at)
        except json.JSONDecodeError:
            at += 1
            continue
        found.append(value)
        at = end
    assert found, text
    return found


def test_the_readme_cli_tour_reaches_the_stack(walk: Walkthrough) -> None:
    for args in (["status"], ["jobs", "--limit", "5"], ["workers"], ["apikey", "list"]):
        result = walk.conveyor(*args)
        assert result.returncode == 0, (args, result.stdout, result.stderr)
    dlq = walk.conveyor("dlq", "list")  # no broker in the default mode: a pointer, not a crash
    assert dlq.returncode == 2 and "conveyor jobs --state dead" in dlq.stdout
    assert "Warning" not in walk.output(), walk.output()  # no Authlib / platformdirs noise
