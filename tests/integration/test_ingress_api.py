"""The HTTP contract: auth, validation, limits, pagination, health and metrics."""

from __future__ import annotations

import uuid

import pytest

from tests.support.stack import Stack

pytestmark = pytest.mark.integration


def test_requests_without_a_valid_key_are_refused(stack: Stack) -> None:
    body = {"kind": "diag.noop", "user_id": "u"}
    missing = stack.client.post("/v1/jobs", json=body)
    wrong = stack.client.post("/v1/jobs", json=body, headers={"Authorization": "Bearer cvk_x_y"})
    garbage = stack.client.post("/v1/jobs", json=body, headers={"Authorization": "Basic abc"})
    for response in (missing, wrong, garbage):
        assert response.status_code == 401
        assert response.json()["code"] == "unauthorized"


@pytest.mark.parametrize("path", ["/v1/jobs", "/v1/jobs:batch"])
def test_the_key_is_checked_before_the_body(stack: Stack, path: str) -> None:
    """A caller without a valid key, or without the scope, learns nothing about what its body
    lacks: 401/403 before any 422. Mutation check: POST /v1/jobs with its key checked inside
    the route (after FastAPI validated the body) answered 422 to the keyless request."""
    invalid = {"kind": 5}
    missing = stack.client.post(path, json=invalid)
    wrong = stack.client.post(path, json=invalid, headers={"Authorization": "Bearer cvk_x_y"})
    read_only = stack.new_api_key(scopes=["read"])
    unscoped = stack.client.post(path, json=invalid, headers=stack.headers(read_only))
    assert [missing.status_code, wrong.status_code, unscoped.status_code] == [401, 401, 403]
    assert unscoped.json()["code"] == "forbidden_scope"
    valid_key = stack.client.post(path, json=invalid, headers=stack.headers())
    assert valid_key.status_code == 422


def test_a_key_sees_only_its_own_jobs_unless_admin(stack: Stack) -> None:
    mine = stack.submit()
    other = stack.new_api_key()
    admin = stack.new_api_key(admin=True)
    hidden = stack.client.get(f"/v1/jobs/{mine['id']}", headers=stack.headers(other))
    assert hidden.status_code == 404
    seen = stack.client.get(f"/v1/jobs/{mine['id']}", headers=stack.headers(admin))
    assert seen.status_code == 200
    assert seen.json()["events"][0]["to_state"] == "queued"
    listed = stack.client.get("/v1/jobs", headers=stack.headers(other)).json()["jobs"]
    assert mine["id"] not in [j["id"] for j in listed]
    cancel = stack.client.post(f"/v1/jobs/{mine['id']}/cancel", headers=stack.headers(other))
    assert cancel.status_code == 404


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"kind": "no.such", "user_id": "u"}, 422, "unknown_kind"),
        (
            {"kind": "diag.noop", "user_id": "u", "payload": {"sleep_ms": "x"}},
            422,
            "invalid_payload",
        ),
        ({"kind": "diag.noop", "user_id": "u", "payload": {"version": 9}}, 422, "unknown_version"),
        ({"kind": "diag.noop"}, 422, "invalid_request"),
        ({"kind": "diag.noop", "user_id": "", "payload": {}}, 422, "invalid_request"),
        ({"kind": "diag.noop", "user_id": "u", "priority": "urgent"}, 422, "invalid_request"),
    ],
)
def test_invalid_submissions_get_a_json_error(
    stack: Stack, body: dict[str, object], status: int, code: str
) -> None:
    response = stack.client.post("/v1/jobs", json=body, headers=stack.headers())
    assert response.status_code == status
    assert response.json()["code"] == code
    assert response.json()["message"]


def test_one_bad_job_rejects_the_whole_batch(stack: Stack) -> None:
    user = f"batch-{uuid.uuid4().hex[:6]}"
    jobs = [{"kind": "diag.noop", "user_id": user}] * 3 + [{"kind": "nope.x", "user_id": user}]
    response = stack.client.post("/v1/jobs:batch", json={"jobs": jobs}, headers=stack.headers())
    assert response.status_code == 422
    listed = stack.client.get("/v1/jobs", params={"user_id": user}, headers=stack.headers())
    assert listed.json()["jobs"] == []


def test_oversized_bodies_are_refused_before_parsing(stack: Stack) -> None:
    big = {"kind": "diag.noop", "user_id": "u", "payload": {"x": "a" * 2_000_000}}
    response = stack.client.post("/v1/jobs", json=big, headers=stack.headers())
    assert response.status_code == 413
    assert response.json()["code"] == "body_too_large"


def test_batches_over_the_limit_are_refused(stack: Stack) -> None:
    jobs = [{"kind": "diag.noop", "user_id": "u"}] * 1001
    response = stack.client.post("/v1/jobs:batch", json={"jobs": jobs}, headers=stack.headers())
    assert response.status_code == 400
    assert response.json()["code"] == "batch_too_large"


def test_listing_pages_through_every_job_once(stack: Stack) -> None:
    token = stack.new_api_key()
    body = {"jobs": [{"kind": "diag.noop", "user_id": "pager"} for _ in range(25)]}
    created = stack.client.post("/v1/jobs:batch", json=body, headers=stack.headers(token))
    expected = {j["id"] for j in created.json()["jobs"]}
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 10, **({"cursor": cursor} if cursor else {})}
        page = stack.client.get("/v1/jobs", params=params, headers=stack.headers(token)).json()
        seen += [j["id"] for j in page["jobs"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 25
    assert set(seen) == expected
    bad = stack.client.get("/v1/jobs", params={"cursor": "!!"}, headers=stack.headers(token))
    assert bad.status_code == 400


def test_health_readiness_metrics_and_openapi(stack: Stack) -> None:
    stack.submit()
    assert stack.client.get("/healthz").json() == {"status": "ok"}
    assert stack.client.get("/readyz").status_code == 200
    metrics = stack.client.get("/metrics").text
    assert 'conveyor_jobs{kind="diag.noop",state="queued"}' in metrics
    assert 'conveyor_queue_ready{queue="conveyor.default"}' in metrics
    assert "conveyor_oldest_queued_job_age_seconds" in metrics
    spec = stack.client.get("/openapi.json").json()
    assert "/v1/jobs:batch" in spec["paths"]


def test_oversized_chunked_bodies_are_refused_too(stack: Stack) -> None:
    def chunks():  # no Content-Length: the limit must hold while streaming
        yield b'{"kind": "diag.noop", "user_id": "u", "payload": {"x": "'
        for _ in range(40):
            yield b"a" * 65536
        yield b'"}}'

    response = stack.client.post(
        "/v1/jobs",
        content=chunks(),
        headers={**stack.headers(), "Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert response.json()["code"] == "body_too_large"


def test_internal_kinds_cannot_be_submitted_through_the_api(stack: Stack) -> None:
    for kind in ("file.delete", "oauth.refresh", "upload.process", "image.thumbnail"):
        body = {"kind": kind, "user_id": "u", "payload": {}}
        response = stack.client.post("/v1/jobs", json=body, headers=stack.headers())
        assert response.status_code == 403, kind
        assert response.json()["code"] == "kind_not_public"
