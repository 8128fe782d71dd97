"""Issue 14 on the HTTP side: every mistake gets a precise JSON answer, nothing is silent."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from shared.db.engine import make_engine, make_session_factory, session_scope
from shared.db.repos import outbox as outbox_repo
from shared.storage.base import ObjectInfo, ObjectStore
from tests.support.stack import Stack
from workers.ingress.app import create_app

pytestmark = pytest.mark.integration


def post_job(stack: Stack, body: dict[str, Any], **headers: str) -> httpx.Response:
    return stack.client.post("/v1/jobs", json=body, headers={**stack.headers(), **headers})


def assert_error(response: httpx.Response, status: int, code: str, *in_message: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"code", "message"}
    assert body["code"] == code
    for part in in_message:
        assert part in body["message"]


@pytest.mark.parametrize(
    ("run_at", "needle"),
    [
        (-5, "ISO 8601"),  # once read as a Unix time (1969) and run at once
        (1_900_000_000, "ISO 8601"),
        ("2027-01-01T10:00:00", "timezone"),
        ("9999-01-01T00:00:00Z", "366 days"),
        ("next tuesday", "run_at"),
    ],
)
def test_run_at_must_be_an_aware_iso_time_within_a_year(
    stack: Stack, run_at: object, needle: str
) -> None:
    response = post_job(stack, {"kind": "diag.noop", "user_id": "u", "run_at": run_at})
    assert_error(response, 422, "invalid_request", "run_at", needle)


def test_delay_s_schedules_relative_to_now_and_excludes_run_at(stack: Stack) -> None:
    before = datetime.now(UTC)
    job = stack.submit(delay_s=120)
    run_at = datetime.fromisoformat(job["run_at"])
    assert before + timedelta(seconds=119) <= run_at <= datetime.now(UTC) + timedelta(seconds=121)
    both = post_job(
        stack,
        {"kind": "diag.noop", "user_id": "u", "delay_s": 5, "run_at": run_at.isoformat()},
    )
    assert_error(both, 422, "invalid_request", "not both")
    negative = post_job(stack, {"kind": "diag.noop", "user_id": "u", "delay_s": -5})
    assert_error(negative, 422, "invalid_request", "delay_s")


def test_unknown_filter_values_are_refused(stack: Stack) -> None:
    state = stack.client.get("/v1/jobs", params={"state": "bogus"}, headers=stack.headers())
    assert_error(state, 422, "invalid_request", "state")
    kind = stack.client.get("/v1/jobs", params={"kind": "bogus"}, headers=stack.headers())
    assert_error(kind, 422, "unknown_kind", "bogus")
    fine = stack.client.get("/v1/jobs", params={"state": "dead"}, headers=stack.headers())
    assert fine.status_code == 200


def test_an_idempotency_key_reused_with_another_body_is_refused(stack: Stack) -> None:
    key = f"order-{uuid.uuid4().hex[:8]}"
    body = {"kind": "diag.noop", "user_id": "u", "payload": {"sleep_ms": 1}}
    first = post_job(stack, body, **{"Idempotency-Key": key})
    again = post_job(stack, body, **{"Idempotency-Key": key})
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json()["id"] == first.json()["id"]
    other = post_job(stack, {**body, "payload": {"sleep_ms": 2}}, **{"Idempotency-Key": key})
    assert_error(other, 422, "idempotency_mismatch", key, first.json()["id"])
    assert stack.job(first.json()["id"]).payload["sleep_ms"] == 1  # nothing was overwritten


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/v1/nothing-here", 404, "not_found"),
        ("DELETE", "/v1/jobs", 405, "method_not_allowed"),
    ],
)
def test_unknown_routes_and_methods_answer_documented_codes(
    stack: Stack, method: str, path: str, status: int, code: str
) -> None:
    response = stack.client.request(method, path, headers=stack.headers())
    assert_error(response, status, code, path)


def test_malformed_and_deeply_nested_json_say_what_is_wrong(stack: Stack) -> None:
    headers = {**stack.headers(), "Content-Type": "application/json"}
    broken = stack.client.post("/v1/jobs", content=b'{"kind": "diag.noop",', headers=headers)
    assert_error(broken, 400, "invalid_json", "not valid JSON")
    deep = b'{"kind":"diag.noop","user_id":"u","payload":{"a":' + b"[" * 5000 + b"]" * 5000 + b"}}"
    nested = stack.client.post("/v1/jobs", content=deep, headers=headers)
    assert_error(nested, 400, "invalid_json", "nested too deeply")


def test_a_batch_error_names_the_failing_job(stack: Stack) -> None:
    jobs: list[dict[str, Any]] = [{"kind": "diag.noop", "user_id": "u"}] * 3
    unknown = stack.client.post(
        "/v1/jobs:batch",
        json={"jobs": [*jobs, {"kind": "nope.x", "user_id": "u"}]},
        headers=stack.headers(),
    )
    assert_error(unknown, 422, "unknown_kind", "jobs[3]")
    bad_payload = [*jobs[:1], {"kind": "diag.noop", "user_id": "u", "payload": {"sleep_ms": "x"}}]
    payload = stack.client.post(
        "/v1/jobs:batch", json={"jobs": bad_payload}, headers=stack.headers()
    )
    assert_error(payload, 422, "invalid_payload", "jobs[1]", "sleep_ms")
    shape = stack.client.post(
        "/v1/jobs:batch", json={"jobs": [*jobs, {"kind": "diag.noop"}]}, headers=stack.headers()
    )
    assert_error(shape, 422, "invalid_request", "jobs[3].user_id")


def test_an_unreachable_database_is_a_json_503_with_retry_after(stack: Stack) -> None:
    engine = make_engine("postgresql+psycopg://nobody@127.0.0.1:1/none", pool_size=1)
    app = create_app(stack.settings(), make_session_factory(engine))
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/v1/jobs", headers=stack.headers())
    engine.dispose()
    assert_error(response, 503, "database_unavailable", "retry")
    assert int(response.headers["Retry-After"]) > 0


class BrokenStore:
    """An object store with a bug: what an unexpected exception looks like to a client."""

    def presigned_post(self, bucket: str, key: str, ttl: timedelta, **binding: object) -> str:
        raise RuntimeError("secret internal detail /srv/conveyor")

    def stat(self, bucket: str, key: str) -> ObjectInfo:
        raise RuntimeError("secret internal detail")


def test_an_unexpected_exception_is_a_json_500_without_internals(stack: Stack) -> None:
    store: ObjectStore = BrokenStore()  # type: ignore[assignment]
    app = create_app(stack.settings(), stack.sessions, store=store)
    body = {"user_id": "u", "filename": "a.png", "content_type": "image/png", "size": 10}
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.post("/v1/uploads", json=body, headers=stack.headers())
    assert_error(response, 500, "internal_error")
    assert "secret" not in response.text and "RuntimeError" not in response.text


def test_outbox_gauge_counts_only_due_rows(stack: Stack) -> None:
    """Delayed jobs (and cancelled delayed ones) are not a publishing backlog."""
    with session_scope(stack.sessions) as session:
        due_before = outbox_repo.pending_count(session)
    delayed = [stack.submit(delay_s=3600) for _ in range(4)]
    for job in delayed:
        cancel = stack.client.post(f"/v1/jobs/{job['id']}/cancel", headers=stack.headers())
        assert cancel.status_code == 200
    # No scheduler runs in this module: cancellation events are due, the 4 job messages not.
    with session_scope(stack.sessions) as session:
        due_after = outbox_repo.pending_count(session)
    assert due_after - due_before == 4  # one `cancelled` event each, no delayed messages
    metrics = stack.client.get("/metrics").text
    assert f"conveyor_outbox_pending {float(due_after)}" in metrics
