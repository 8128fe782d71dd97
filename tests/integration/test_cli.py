"""The operator CLI against real services."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator

import pika
import pytest

from tests.support.services import AMQP_USER, wait_for
from tests.support.stack import Stack

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def running(stack: Stack) -> Iterator[Stack]:
    stack.start_scheduler()
    stack.start_worker("default", processes=1, threads=2)
    yield stack


def conveyor(stack: Stack, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return stack.cli(*args, timeout=timeout)


def test_submit_and_wait_follows_the_job_to_success(running: Stack) -> None:
    result = conveyor(
        running,
        "submit",
        "diag.noop",
        "--user",
        "cli-user",
        "--payload",
        '{"sleep_ms": 300}',
        "--wait",
    )
    assert result.returncode == 0, result.stderr
    assert "succeeded" in result.stdout
    job_id = result.stdout.split("submitted ")[1].split()[0]
    shown = conveyor(running, "job", job_id)
    assert shown.returncode == 0
    assert "queued" in shown.stdout and "succeeded" in shown.stdout


def test_submit_refuses_bad_input_with_a_reason(running: Stack) -> None:
    unknown = conveyor(running, "submit", "no.such", "--user", "u")
    assert unknown.returncode == 1
    assert "unknown_kind" in unknown.stdout
    bad_json = conveyor(running, "submit", "diag.noop", "--user", "u", "--payload", "{")
    assert bad_json.returncode == 2
    failing = conveyor(
        running,
        "submit",
        "diag.noop",
        "--user",
        "u",
        "--payload",
        '{"fail_permanently": true}',
        "--wait",
    )
    assert failing.returncode == 1
    assert "injected" in failing.stdout


def test_status_shows_queues_and_kinds(running: Stack) -> None:
    running.wait_state(running.submit()["id"])
    result = conveyor(running, "status")
    assert result.returncode == 0, result.stderr
    assert "conveyor.default" in result.stdout
    assert "diag.noop" in result.stdout
    # The scheduler's leader purges on its first iteration: the run shows up in status.
    wait_for(
        lambda: "last purge run: never" not in conveyor(running, "status").stdout,
        timeout=60,
        what="a retention run in status",
    )
    assert "retention: terminal jobs kept 7d" in conveyor(running, "status").stdout


def test_apikey_create_prints_a_working_token(running: Stack) -> None:
    result = conveyor(running, "apikey", "create", "ci-test")
    token = result.stdout.strip().splitlines()[-1]
    response = running.client.get("/v1/jobs", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200


def test_tenant_create_and_a_tenant_key_sees_only_its_tenant(running: Stack) -> None:
    created = conveyor(running, "tenant", "create", "cli-tenant", "--name", "CLI Tenant")
    assert "tenant cli-tenant created" in created.stdout
    assert "exists already" in conveyor(running, "tenant", "create", "cli-tenant").stdout
    assert conveyor(running, "tenant", "create", "Bad Id").returncode == 2
    result = conveyor(running, "apikey", "create", "tenant-key", "--tenant", "cli-tenant")
    token = result.stdout.strip().splitlines()[-1]
    mine = running.client.post(
        "/v1/jobs",
        json={"kind": "diag.noop", "user_id": "cli-user"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert mine.status_code == 202, mine.text
    assert running.job(mine.json()["id"]).tenant_id == "cli-tenant"
    # The default tenant's key does not see it.
    other = running.client.get(f"/v1/jobs/{mine.json()['id']}", headers=running.headers())
    assert other.status_code == 404
    # The operator's `conveyor jobs` (the owner) lists across tenants.
    short = mine.json()["id"][:8]
    assert short in conveyor(running, "jobs", "--user", "cli-user").stdout
    listed = conveyor(running, "tenant", "list").stdout
    assert "cli-tenant" in listed and "CLI Tenant" in listed and "default" in listed
    assert "cli-tenant" in conveyor(running, "apikey", "list").stdout
    assert conveyor(running, "apikey", "create", "x", "--tenant", "nope").returncode == 1


def test_dlq_list_and_replay_bring_a_dead_job_back(running: Stack) -> None:
    job = running.submit(payload={"fail_times": 3})  # 3 attempts allowed: dies
    assert running.wait_state(job["id"]).state == "dead"
    marker = uuid.uuid4().hex
    channel = running.amqp_channel()
    channel.basic_publish(
        "conveyor.jobs",
        "diag.noop",
        f"not json {marker}".encode(),
        # As the service user: a foreign publisher's garbage would be refused before parsing.
        pika.BasicProperties(delivery_mode=2, user_id=AMQP_USER),
    )
    channel.connection.close()

    def listed() -> bool:
        out = conveyor(running, "dlq", "list", "--pool", "default", "--limit", "500").stdout
        return job["id"] in out and "not_json" in out

    wait_for(listed, timeout=20, interval=1, what="dead letters listed")
    replay = conveyor(running, "dlq", "replay", "--pool", "default", "--limit", "500")
    assert replay.returncode == 0
    assert "replayed" in replay.stdout
    # The replayed job gets a fresh budget: attempt 4 fails again only if fail_times >= 4.
    done = running.wait_state(job["id"], "succeeded", timeout=30)
    assert done.attempt == 4
    assert (3, "dead", "queued", "replayed") in running.events(job["id"])
    # The malformed message is not replayable and stays, still listed.
    after = conveyor(running, "dlq", "list", "--pool", "default", "--limit", "500").stdout
    assert marker in after or "not_json" in after
