"""/v1/exports and /v1/export-schedules through a real scheduler, export worker and SeaweedFS."""

from __future__ import annotations

import gzip
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text

from shared.db.engine import session_scope
from shared.db.models import Export
from shared.embedded import EmbeddedS3
from shared.storage.base import ObjectNotFound
from tests.support.exports import World, read_rows, seed
from tests.support.services import wait_for
from tests.support.stack import Stack
from workers.ingress.app import create_app

pytestmark = pytest.mark.integration

KEY = "export-pseudonym-key-for-tests-0123456789"
MARCH = {"kind": "custom", "from": "2026-03-01", "to": "2026-03-31"}


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory, s3_server: EmbeddedS3) -> Iterator[Stack]:
    stack = Stack.create(tmp_path_factory.mktemp("logs"), s3=s3_server)
    stack.start_scheduler(CONVEYOR_EXPORT_SWEEP_INTERVAL_S="1")
    stack.start_worker(
        "export",
        threads=2,
        CONVEYOR_EXPORT_PSEUDONYM_KEY=KEY,
        CONVEYOR_EXPORT_PDF_MAX_ROWS="3",
    )
    yield stack
    stack.close()


def client_for(stack: Stack, **settings: Any) -> TestClient:
    app = create_app(
        stack.settings(export_pseudonym_key=KEY, **settings),
        stack.sessions,
        stack.store if stack.s3 else None,
    )
    return TestClient(app)


@pytest.fixture(scope="module")
def api(running: Stack) -> Iterator[TestClient]:
    with client_for(running, export_max_daily_per_user=100) as client:
        client.headers["Authorization"] = f"Bearer {running.token}"
        yield client


def body(world: World, **extra: Any) -> dict[str, Any]:
    return {
        "user_id": str(world.owner),
        "template": "message_analytics",
        "format": "csv",
        "range": MARCH,
        **extra,
    }


def finished(stack: Stack, api: TestClient, export: dict[str, Any]) -> dict[str, Any]:
    stack.wait_state(export["job_id"], timeout=60)
    response = api.get(f"/v1/exports/{export['id']}")
    assert response.status_code == 200, response.text
    return dict(response.json())


def post(api: TestClient, payload: dict[str, Any], status: int = 202) -> dict[str, Any]:
    response = api.post("/v1/exports", json=payload)
    assert response.status_code == status, response.text
    return dict(response.json())


def test_export_runs_through_worker_and_downloads_from_s3(
    running: Stack, api: TestClient, tmp_path: Path
) -> None:
    world = seed(running.engine)
    templates = api.get("/v1/exports/templates").json()
    assert {t["name"] for t in templates["templates"]} >= {"user_activity", "custom"}
    assert "parquet" in templates["formats"] and "last_quarter" in templates["ranges"]

    created = post(api, body(world))
    assert created["status"] == "queued" and created["job_id"]
    done = finished(running, api, created)
    assert done["status"] == "ready" and done["rows"] == len(world.march_messages)
    rows = read_rows("csv", httpx.get(done["download_url"], timeout=60).content, tmp_path)
    assert {r["message_id"] for r in rows} == world.march_messages
    assert running.job(created["job_id"]).result["download_url"]  # type: ignore[index]
    listed = api.get("/v1/exports", params={"user_id": str(world.owner)}).json()
    assert [e["id"] for e in listed["exports"]] == [created["id"]]


def test_anonymized_gzip_html_has_no_identifier(running: Stack, api: TestClient) -> None:
    world = seed(running.engine)
    created = post(api, body(world, format="html", anonymize=True, compression="gzip"))
    done = finished(running, api, created)
    assert done["status"] == "ready" and done["filename"].endswith(".html.gz")
    document = gzip.decompress(httpx.get(done["download_url"], timeout=60).content).decode().lower()
    assert [i for i in world.identifiers if i.lower() in document] == []


def test_failure_is_reported_with_its_reason(running: Stack, api: TestClient) -> None:
    world = seed(running.engine)
    done = finished(running, api, post(api, body(world, format="pdf")))  # 6 rows > cap of 3
    assert (done["status"], done["error_code"]) == ("failed", "too_many_rows")
    assert done["download_url"] is None


def test_delete_removes_the_file_and_expiry_sweeps(running: Stack, api: TestClient) -> None:
    world = seed(running.engine)
    first = finished(running, api, post(api, body(world)))
    second = finished(running, api, post(api, body(world, format="parquet")))
    keys = {e["id"]: object_key(running, e["id"]) for e in (first, second)}

    assert api.post(f"/v1/exports/{first['id']}/cancel").status_code == 409
    assert api.delete(f"/v1/exports/{first['id']}").status_code == 204
    assert api.get(f"/v1/exports/{first['id']}").json()["status"] == "deleted"
    assert not exists(running, keys[first["id"]])

    with session_scope(running.sessions) as session:  # as if seven days had passed
        session.execute(
            text("UPDATE exports SET expires_at = now() - interval '1 second' WHERE id = :id"),
            {"id": second["id"]},
        )
    wait_for(
        lambda: api.get(f"/v1/exports/{second['id']}").json()["status"] == "expired",
        timeout=30,
        what="the scheduler's expiry sweep",
    )
    assert not exists(running, keys[second["id"]])
    assert api.get(f"/v1/exports/{second['id']}").json()["download_url"] is None


def test_schedule_fires_from_the_scheduler(running: Stack, api: TestClient) -> None:
    world = seed(running.engine)
    spec = {k: v for k, v in body(world).items() if k != "user_id"}
    created = api.post(
        "/v1/export-schedules",
        json={"user_id": str(world.owner), "cron": "0 6 * * MON", "export": spec},
    )
    assert created.status_code == 201, created.text
    schedule = created.json()
    assert schedule["timezone"] == "Europe/Oslo"
    listed = api.get("/v1/export-schedules", params={"user_id": str(world.owner)}).json()
    assert [s["id"] for s in listed] == [schedule["id"]]
    with session_scope(running.sessions) as session:  # due now
        session.execute(
            text("UPDATE export_schedules SET next_run_at = now() WHERE id = :id"),
            {"id": schedule["id"]},
        )
    wait_for(lambda: scheduled_exports(running, schedule["id"]), timeout=30, what="a run")
    [export_id] = scheduled_exports(running, schedule["id"])
    export = api.get(f"/v1/exports/{export_id}").json()
    assert finished(running, api, export)["status"] == "ready"
    assert api.delete(f"/v1/export-schedules/{schedule['id']}").status_code == 204


def test_bad_requests_get_clear_errors(running: Stack, api: TestClient) -> None:
    world = seed(running.engine)
    cases = [
        (body(world, template="nope"), 422, "invalid_export"),
        (
            body(world, template="custom", options={"custom": {"dataset": "users"}}),
            422,
            "invalid_export",
        ),
        (body(world, options={"timezone": "Mars/Base"}), 422, "invalid_timezone"),
        ({**body(world), "user_id": str(uuid.uuid4())}, 404, "unknown_user"),
        ({**body(world), "user_id": "not-a-uuid"}, 404, "unknown_user"),
        (body(world, range={"kind": "custom", "from": "2026-03-02"}), 422, "invalid_request"),
        (body(world, format="docx"), 422, "invalid_request"),
        (
            body(world, range={"kind": "custom", "from": "9999-12-30", "to": "9999-12-31"}),
            422,
            "invalid_request",
        ),
    ]
    for payload, status, code in cases:
        response = api.post("/v1/exports", json=payload)
        assert (response.status_code, response.json()["code"]) == (status, code), payload
    bad_cron = {"user_id": str(world.owner), "cron": "every monday", "export": {}}
    assert api.post("/v1/export-schedules", json=bad_cron).status_code == 422
    assert api.get(f"/v1/exports/{uuid.uuid4()}").json()["code"] == "not_found"
    assert api.get("/v1/exports/templates", headers={"Authorization": ""}).status_code == 401


def test_limits_answer_429_with_retry_after(stack: Stack) -> None:
    """No worker here: jobs stay queued, so the concurrency count is deterministic."""
    world = seed(stack.engine)
    token = stack.new_api_key()
    with client_for(stack, export_max_concurrent_per_user=5, export_max_daily_per_user=2) as api:
        api.headers["Authorization"] = f"Bearer {token}"
        post(api, body(world))
        post(api, body(world))
        refused = api.post("/v1/exports", json=body(world))
        assert refused.status_code == 429 and refused.json()["code"] == "rate_limited"
        assert 86_000 < int(refused.headers["Retry-After"]) <= 86_401
    other = seed(stack.engine)
    with client_for(stack, export_max_concurrent_per_user=1) as api:
        api.headers["Authorization"] = f"Bearer {token}"
        queued = post(api, body(other))
        refused = api.post("/v1/exports", json=body(other))
        assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0
        cancelled = api.post(f"/v1/exports/{queued['id']}/cancel")
        assert cancelled.json()["status"] == "cancelled"
        post(api, body(other))  # the slot is free again


def object_key(stack: Stack, export_id: str) -> tuple[str, str]:
    with session_scope(stack.sessions) as session:
        export = session.get(Export, uuid.UUID(export_id))
        assert export is not None and export.bucket and export.key
        return export.bucket, export.key


def exists(stack: Stack, where: tuple[str, str]) -> bool:
    try:
        stack.store.stat(*where)
    except ObjectNotFound:
        return False
    return True


def scheduled_exports(stack: Stack, schedule_id: str) -> list[str]:
    with session_scope(stack.sessions) as session:
        query = select(Export.id).where(Export.schedule_id == uuid.UUID(schedule_id))
        return [str(i) for i in session.execute(query).scalars()]
