"""Issue 14: the CLI against a running `conveyor dev`, as a newcomer uses them.

`conveyor dev` runs in a temporary folder on this test's own database and RabbitMQ vhost
(and the shared SeaweedFS with fresh buckets); every CLI call runs in that folder with no
CONVEYOR_* variable at all, so it must find the stack through `.conveyor/env`.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from shared.embedded import EmbeddedS3
from shared.messaging.depth import queue_depths
from tests.support.dev import DevProcess, clean_env, conveyor
from tests.support.services import wait_for
from tests.support.stack import Stack

pytestmark = pytest.mark.integration

OAUTH = {
    "CONVEYOR_OAUTH_GENERIC_CLIENT_ID": "dev-client",
    "CONVEYOR_OAUTH_GENERIC_CLIENT_SECRET": "a-real-looking-client-secret",
    "CONVEYOR_OAUTH_GENERIC_AUTHORIZE_URL": "https://idp.example.test/authorize",
    "CONVEYOR_OAUTH_GENERIC_TOKEN_URL": "https://idp.example.test/token",
}


def stack_env(stack: Stack, *, broker: bool) -> dict[str, str]:
    env = {k: v for k, v in stack.env().items() if k.startswith("CONVEYOR_")}
    env.pop("CONVEYOR_LOG_JSON")  # a newcomer reads the console format
    if not broker:
        env.pop("CONVEYOR_BROKER_URL")
    return clean_env(**env, **OAUTH)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory, s3_server: EmbeddedS3) -> Iterator[Stack]:
    stack = Stack.create(tmp_path_factory.mktemp("logs"), s3=s3_server)
    yield stack
    stack.close()


@pytest.fixture(scope="module")
def dev(files: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevProcess]:
    process = DevProcess.start(tmp_path_factory.mktemp("newcomer"), stack_env(files, broker=True))
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()


def run(dev: DevProcess, *args: str) -> subprocess.CompletedProcess[str]:
    result = conveyor(dev.folder, *args)
    assert "CONVEYOR_DATABASE_URL is not set" not in result.stdout
    return result


def job_id_in(text: str) -> str:
    found = re.search(r"(?:submitted|replayed) ([0-9a-f-]{36})", text)
    assert found, text
    return found.group(1)


def test_banner_comes_once_every_used_pool_consumes_and_its_example_works(
    dev: DevProcess, files: Stack
) -> None:
    consumers = {d.queue: d.consumers for d in queue_depths(files.amqp_url)}
    # Every pool now serves kinds, so `conveyor dev` consumes from each of them.
    for used in (
        "conveyor.default",
        "conveyor.media",
        "conveyor.oauth",
        "conveyor.backup",
        "conveyor.sync",
        "conveyor.export",
    ):
        assert consumers[used] >= 1, consumers
    # Pasted right after the banner: no connection refused, no empty reply.
    pasted = subprocess.run(
        dev.banner_curl(), shell=True, capture_output=True, text=True, timeout=30, check=True
    )
    job = json.loads(pasted.stdout)
    assert job["state"] == "queued"
    wait_for(
        lambda: "state=succeeded" in run(dev, "job", job["id"]).stdout,
        timeout=60,
        interval=0.5,
        what="the banner's job to succeed",
    )
    headers = {"Authorization": f"Bearer {dev.token()}"}
    seen = httpx.get(f"{dev.url}/v1/jobs/{job['id']}", headers=headers, timeout=60).json()
    assert re.fullmatch(r"\S+:\d+", seen["worker"]), seen  # which worker ran it
    metrics = httpx.get(f"{dev.url}/metrics", timeout=60).text
    assert 'conveyor_queue_consumers{queue="conveyor.default"}' in metrics
    assert 'conveyor_queue_consumers{queue="conveyor.backup"}' in metrics  # every pool serves kinds
    output = dev.output()
    assert re.search(r"Conveyor is ready at http://127\.0\.0\.1:\d+ in [\d.]+s", output)
    assert "export CONVEYOR_DATABASE_URL=" in output
    assert re.search(r"worker.pool_started +pool=default", output), output


def test_cli_submits_waits_and_lists_through_the_dev_env_file(dev: DevProcess) -> None:
    status = run(dev, "status")
    assert status.returncode == 0, status.stdout + status.stderr
    assert "conveyor.default" in status.stdout
    key = f"cli-{uuid.uuid4().hex[:6]}"
    args = ["submit", "diag.noop", "--user", "newcomer", "--idempotency-key", key]
    first = run(dev, *args, "--payload", '{"sleep_ms": 10}', "--delay", "1", "--wait")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "state=succeeded" in first.stdout
    again = run(dev, *args, "--payload", '{"sleep_ms": 10}', "--delay", "1")
    assert again.returncode == 0 and "replayed" in again.stdout
    assert job_id_in(again.stdout) == job_id_in(first.stdout)
    other = run(dev, *args, "--payload", '{"sleep_ms": 99}')
    assert other.returncode == 1 and "idempotency_mismatch" in other.stdout
    listed = run(dev, "jobs", "--state", "succeeded", "--user", "newcomer")
    assert job_id_in(first.stdout) in listed.stdout
    shown = run(dev, "job", job_id_in(first.stdout))
    assert "message" in shown.stdout and "worker=" in shown.stdout


def test_cli_cancels_a_scheduled_job_and_refuses_bad_filters(dev: DevProcess) -> None:
    later = (datetime.now(UTC) + timedelta(hours=1)).replace(tzinfo=None).isoformat()
    submitted = run(dev, "submit", "diag.noop", "--user", "newcomer", "--run-at", later)
    job_id = job_id_in(submitted.stdout)
    assert f"run_at={later[:16]}" in run(dev, "job", job_id).stdout  # naive means UTC
    cancelled = run(dev, "cancel", job_id)
    assert cancelled.returncode == 0 and "cancelled" in cancelled.stdout
    twice = run(dev, "cancel", job_id)
    assert twice.returncode == 1 and "not_cancellable" in twice.stdout
    assert run(dev, "jobs", "--state", "bogus").returncode == 2
    unknown = run(dev, "jobs", "--kind", "bogus.kind")
    assert unknown.returncode == 2 and "unknown kind" in unknown.stdout


def test_workers_view_names_who_ran_what(dev: DevProcess) -> None:
    done = run(dev, "submit", "diag.noop", "--user", "newcomer", "--wait")
    assert done.returncode == 0
    view = run(dev, "workers")
    assert view.returncode == 0
    assert re.search(r"\S+:\d+.*default", view.stdout), view.stdout


def test_apikey_create_list_revoke(dev: DevProcess) -> None:
    name = f"k-{uuid.uuid4().hex[:6]}"
    created = run(dev, "apikey", "create", name)
    token = created.stdout.strip().splitlines()[-1]
    headers = {"Authorization": f"Bearer {token}"}
    assert httpx.get(f"{dev.url}/v1/jobs", headers=headers, timeout=60).status_code == 200
    assert name in run(dev, "apikey", "list").stdout
    revoked = run(dev, "apikey", "revoke", name)
    assert revoked.returncode == 0, revoked.stdout
    assert httpx.get(f"{dev.url}/v1/jobs", headers=headers, timeout=60).status_code == 401
    assert run(dev, "apikey", "revoke", name).returncode == 1  # nothing live left


def test_demo_data_prints_a_table_of_rows(dev: DevProcess) -> None:
    result = run(dev, "demo-data", "--users", "3", "--messages", "20")
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"messages\s*│\s*20\b", result.stdout), result.stdout
    assert "DemoDataSummary(" not in result.stdout


def test_cli_works_from_a_subfolder(dev: DevProcess) -> None:
    sub = dev.folder / "src" / "deep"
    sub.mkdir(parents=True, exist_ok=True)
    result = conveyor(sub, "jobs", "--limit", "1")
    assert result.returncode == 0, result.stdout + result.stderr


def test_dlq_list_and_version_and_misspelled_variables(dev: DevProcess) -> None:
    dlq = run(dev, "dlq", "list")
    assert dlq.returncode == 0, dlq.stdout + dlq.stderr
    assert "dead letter(s) shown" in dlq.stdout
    version = run(dev, "--version")
    assert version.returncode == 0 and version.stdout.startswith("conveyor ")
    typo = conveyor(dev.folder, "status", env=clean_env(CONVEYOR_DATABSE_URL="x"))
    assert "CONVEYOR_DATABSE_URL" in typo.stderr and "CONVEYOR_DATABASE_URL?" in typo.stderr


def test_oauth_works_in_dev_with_the_generated_key_ring(dev: DevProcess) -> None:
    headers = {"Authorization": f"Bearer {dev.token()}"}
    providers = httpx.get(f"{dev.url}/v1/oauth/providers", headers=headers, timeout=60).json()
    assert providers["generic"] == "configured"
    authorize = httpx.get(
        f"{dev.url}/v1/oauth/generic/authorize",
        params={"user_id": "u"},
        headers=headers,
        timeout=60,
    )
    assert authorize.status_code == 302, authorize.text
    assert authorize.headers["location"].startswith(OAUTH["CONVEYOR_OAUTH_GENERIC_AUTHORIZE_URL"])
    assert (dev.folder / ".conveyor" / "master_keys").stat().st_mode & 0o077 == 0


def test_a_second_dev_in_the_same_folder_says_where_the_first_runs(dev: DevProcess) -> None:
    second = conveyor(dev.folder, "dev", "--port", "1")
    assert second.returncode == 1
    assert f"already running at {dev.url}" in second.stdout
    assert "Traceback" not in second.stdout + second.stderr


def test_dev_stops_quickly_with_a_line_per_component(files: Stack, tmp_path: Path) -> None:
    process = DevProcess.start(tmp_path / "stub", stack_env(files, broker=False))
    process.wait_ready()
    env_file = process.folder / ".conveyor" / "env"
    assert env_file.exists()
    assert process.stop() == 0
    output = process.output()
    for part in ("ingress", "in-process workers", "scheduler", "env file"):
        assert f"stopped {part}" in output, output
    assert "Conveyor stopped" in output
    assert not env_file.exists()
    after = conveyor(process.folder, "status")
    assert after.returncode == 2 and "conveyor dev" in after.stdout


def test_a_busy_port_is_said_in_one_line_and_everything_stops(files: Stack, tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        process = DevProcess.start(tmp_path / "busy", stack_env(files, broker=False), port=port)
        assert process.process.wait(180) == 1
    output = process.output()
    assert f"could not listen on 127.0.0.1:{port}" in output
    assert "Conveyor stopped" in output and "Traceback" not in output
