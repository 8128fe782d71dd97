"""Limits on the HTTP API (issue #12, deliverable 3), on real PostgreSQL.

Each guarantee was broken on purpose once (the check commented out) to see its test fail.
The rate-limit tests drive an injected clock: a bucket refills when the clock moves, so
nothing here waits on real time.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text, update

from shared.db.engine import make_session_factory, normalize_url, session_scope
from shared.db.models import ApiKey
from shared.db.repos import api_keys as api_keys_repo
from shared.db.repos import limits as limits_repo
from shared.db.tenancy import bind_tenant
from shared.jobs.caps import NearTheCap, QueueFull, check_one_beside_others
from shared.jobs.submit import NewJob, submit_jobs
from shared.storage.memory import MemoryStore
from tests.integration.test_newcomer_api import assert_error
from tests.support.stack import Stack
from tests.support.sync_client import SyncClient, new_device, new_user
from workers.ingress.app import create_app

pytestmark = pytest.mark.integration


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2030, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


def client(stack: Stack, clock: Clock | None = None, **settings: Any) -> Iterator[TestClient]:
    app = create_app(stack.settings(**settings), stack.sessions, MemoryStore(), clock=clock)
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def limited(stack: Stack, clock: Clock) -> Iterator[TestClient]:
    """1 request/s, bursts of 3."""
    yield from client(stack, clock, rate_limit_per_s=1.0, rate_limit_burst=3)


def test_a_key_gets_its_burst_then_429_with_retry_after_then_refills(
    stack: Stack, limited: TestClient, clock: Clock
) -> None:
    """Broken on purpose (enforce_rate_limit not called): the 4th request was a 200."""
    headers = stack.headers(stack.new_api_key())
    assert [limited.get("/v1/jobs", headers=headers).status_code for _ in range(3)] == [200] * 3
    refused = limited.get("/v1/jobs", headers=headers)
    assert_error(refused, 429, "rate_limited", "1 requests/s")
    assert refused.headers["Retry-After"] == "1"
    clock.advance(0.5)  # half a token: still refused, and told to wait the other half
    assert limited.get("/v1/jobs", headers=headers).status_code == 429
    clock.advance(0.5)
    assert limited.get("/v1/jobs", headers=headers).status_code == 200
    assert limited.get("/v1/jobs", headers=headers).status_code == 429
    clock.advance(3600)  # a long pause refills to the burst, not beyond
    assert [limited.get("/v1/jobs", headers=headers).status_code for _ in range(4)] == [
        200,
        200,
        200,
        429,
    ]


def test_buckets_are_per_key_and_refused_requests_cost_nothing(
    stack: Stack, limited: TestClient, clock: Clock
) -> None:
    first, second = stack.headers(stack.new_api_key()), stack.headers(stack.new_api_key())
    for _ in range(3):
        limited.get("/v1/jobs", headers=first)
    assert limited.get("/v1/jobs", headers=first).status_code == 429
    assert limited.get("/v1/jobs", headers=second).status_code == 200
    for _ in range(20):  # hammering while limited does not push the refill further away
        limited.get("/v1/jobs", headers=first)
    clock.advance(1)
    assert limited.get("/v1/jobs", headers=first).status_code == 200


def test_failed_requests_spend_tokens_too(stack: Stack, limited: TestClient) -> None:
    """A 4xx rolls the request's transaction back; the token is spent in its own."""
    headers = stack.headers(stack.new_api_key())
    for _ in range(3):
        bad = limited.post("/v1/jobs", json={"kind": "no.such", "user_id": "u"}, headers=headers)
        assert bad.status_code == 422
    assert limited.get("/v1/jobs", headers=headers).status_code == 429


def test_the_bucket_is_shared_by_every_ingress_replica(stack: Stack, clock: Clock) -> None:
    """Two apps (two replicas) over one database drain one bucket per key."""
    headers = stack.headers(stack.new_api_key())
    replicas = [client(stack, clock, rate_limit_per_s=1.0, rate_limit_burst=3) for _ in range(2)]
    a, b = (next(r) for r in replicas)
    assert [c.get("/v1/jobs", headers=headers).status_code for c in (a, b, a)] == [200] * 3
    assert b.get("/v1/jobs", headers=headers).status_code == 429
    for r in replicas:
        r.close()


def test_a_key_can_have_its_own_limit(stack: Stack, limited: TestClient) -> None:
    token = stack.new_api_key()
    with session_scope(stack.sessions) as session:
        prefix = token.split("_")[1]
        session.execute(update(ApiKey).where(ApiKey.prefix == prefix).values(rate_limit_burst=1))
    headers = stack.headers(token)
    assert limited.get("/v1/jobs", headers=headers).status_code == 200
    assert limited.get("/v1/jobs", headers=headers).status_code == 429


def test_a_request_holds_at_most_one_pooled_connection(stack: Stack) -> None:
    """The rate-limit token is spent in a transaction of its own, on a second connection: if
    the request's session still held the one it authenticated on, N concurrent requests on
    a pool of N connections would each hold one and wait for another (found by
    bench/ingress.py: 32 clients on the ingress's pool of 20 stalled 30 s, then 500s). A pool
    of ONE connection must still serve every route, one request after the other.
    Broken on purpose once (no commit between authentication and the token): the first
    request waited out the pool timeout and answered 500."""
    engine = create_engine(normalize_url(stack.db_url), pool_size=1, max_overflow=0, pool_timeout=2)
    try:
        app = create_app(stack.settings(), make_session_factory(engine), MemoryStore())
        headers = stack.headers(stack.new_api_key())
        job = {"kind": "diag.noop", "user_id": "u"}
        with TestClient(app, raise_server_exceptions=False) as single_pool:
            created = single_pool.post("/v1/jobs", json=job, headers=headers)
            assert created.status_code == 202, created.text
            batch = single_pool.post("/v1/jobs:batch", json={"jobs": [job] * 3}, headers=headers)
            assert batch.status_code == 202, batch.text
            got = single_pool.get(f"/v1/jobs/{created.json()['id']}", headers=headers)
            assert got.status_code == 200, got.text
            assert single_pool.get("/v1/jobs", headers=headers).status_code == 200
    finally:
        engine.dispose()


def test_concurrent_takes_never_admit_more_than_the_burst(stack: Stack) -> None:
    """Eight threads race on one key's empty bucket, each check one autocommit statement
    (as the single-job submit runs it): exactly `burst` are admitted."""
    from concurrent.futures import ThreadPoolExecutor

    token = stack.new_api_key()
    now = datetime(2031, 1, 1, tzinfo=UTC)
    engine = stack.sessions.kw["bind"].execution_options(isolation_level="AUTOCOMMIT")

    def take(_: int) -> float:
        with engine.connect() as conn:
            admission = api_keys_repo.admit(conn, token, clock=now, per_s=0.001, burst=5)
            assert admission.key is not None
            return admission.wait_s

    with ThreadPoolExecutor(8) as pool:
        waits = list(pool.map(take, range(40)))
    assert sum(1 for w in waits if w == 0) == 5
    assert all(w > 0 for w in waits if w != 0)


def _unfinished(stack: Stack, kind: str) -> int:
    with session_scope(stack.sessions) as session:
        return limits_repo.unfinished_by_kind(session, "default", [kind]).get(kind, 0)


def test_queued_jobs_are_capped_per_kind_and_a_batch_is_refused_whole(stack: Stack) -> None:
    """No worker runs here, so submitted jobs stay queued. Broken on purpose (no
    check_queue_caps in the batch route): the batch was accepted past the cap."""
    cap = _unfinished(stack, "diag.noop") + 3
    user = f"cap-{uuid.uuid4().hex[:6]}"
    job = {"kind": "diag.noop", "user_id": user}
    for capped in client(stack, queue_caps_by_kind={"diag.noop": cap}):
        headers = stack.headers()
        batch = capped.post("/v1/jobs:batch", json={"jobs": [job] * 2}, headers=headers)
        assert batch.status_code == 202, batch.text
        too_many = capped.post("/v1/jobs:batch", json={"jobs": [job] * 2}, headers=headers)
        assert_error(too_many, 429, "queue_full", "diag.noop", f"cap {cap}")
        assert int(too_many.headers["Retry-After"]) > 0
        once = {**headers, "Idempotency-Key": f"last-{user}"}
        assert capped.post("/v1/jobs", json=job, headers=once).status_code == 202
        refused = capped.post("/v1/jobs", json=job, headers=headers)
        assert_error(refused, 429, "queue_full")
        # At the cap, a replay of the last submission still gets its job (it adds none).
        # (Broken on purpose once, the cap checked before the replay lookup: this was a 429.)
        replayed = capped.post("/v1/jobs", json=job, headers=once)
        assert replayed.status_code == 200, replayed.text
        listed = capped.get("/v1/jobs", params={"user_id": user}, headers=headers).json()
        assert len(listed["jobs"]) == 3  # nothing of the refused batch was written


@pytest.mark.parametrize(("sleep_ms", "status"), [(59_999, 202), (60_000, 422), (600_000, 422)])
def test_declared_work_must_fit_the_kinds_time_limit(
    stack: Stack, sleep_ms: int, status: int
) -> None:
    """diag.noop's time limit is 60 s: sleep_ms=600000 used to be accepted."""
    body = {"kind": "diag.noop", "user_id": "u", "payload": {"sleep_ms": sleep_ms}}
    response = stack.client.post("/v1/jobs", json=body, headers=stack.headers())
    assert response.status_code == status, response.text
    if status == 422:
        assert_error(response, 422, "invalid_payload", "time limit of 60 s")


def test_a_batchs_total_declared_work_is_bounded(stack: Stack) -> None:
    job = {"kind": "diag.noop", "user_id": "u", "payload": {"sleep_ms": 50_000}}
    for bounded in client(stack, max_batch_work_s=100):
        ok = bounded.post("/v1/jobs:batch", json={"jobs": [job] * 2}, headers=stack.headers())
        assert ok.status_code == 202, ok.text
        over = bounded.post("/v1/jobs:batch", json={"jobs": [job] * 3}, headers=stack.headers())
        assert_error(over, 422, "batch_too_much_work", "150 s", "100 s")


def test_one_backup_at_a_time_per_user(stack: Stack) -> None:
    """Broken on purpose (no check_concurrent_backups): the second was a 202."""
    user = new_user(stack)  # a product user of the key's tenant (others are 404)
    first = stack.client.post("/v1/backups", json={"user_id": user}, headers=stack.headers())
    assert first.status_code == 202, first.text
    second = stack.client.post("/v1/backups", json={"user_id": user}, headers=stack.headers())
    assert_error(second, 429, "too_many_backups")
    assert int(second.headers["Retry-After"]) > 0
    other = stack.client.post(
        "/v1/backups", json={"user_id": new_user(stack)}, headers=stack.headers()
    )
    assert other.status_code == 202


def test_an_upload_past_the_users_quota_is_refused_up_front(stack: Stack) -> None:
    from shared.db.repos import files as files_repo

    user = f"quota-{uuid.uuid4().hex[:6]}"
    with session_scope(stack.sessions) as session:
        files_repo.lock_storage(session, user)
        files_repo.add_usage(session, user, size=900, files=1)
    body = {"user_id": user, "filename": "a.png", "content_type": "image/png", "size": 101}
    for small in client(stack, user_quota_bytes=1000):
        refused = small.post("/v1/uploads", json=body, headers=stack.headers())
        assert_error(refused, 409, "quota_exceeded", "quota 1000")
        fits = small.post("/v1/uploads", json={**body, "size": 100}, headers=stack.headers())
        assert fits.status_code == 201, fits.text
        assert fits.json()["method"] == "POST"


def test_a_device_queues_only_a_few_syncs_and_counts_against_the_tenant_cap(
    stack: Stack,
) -> None:
    """Device requests carry no API key, so no key's bucket bounds them; these limits do (no
    worker here: syncs stay queued). Broken on purpose once (check_device_syncs not called):
    the third sync was a 202."""
    phone, laptop = new_device(stack, new_user(stack)), new_device(stack, new_user(stack))

    def sync(app: TestClient, device: SyncClient, batch: str) -> Any:
        body = {"batch_id": batch, "changes": []}
        path = f"/v1/devices/{device.device_id}/sync"
        return app.post(path, json=body, headers=device.headers)

    batches = [str(uuid.uuid4()) for _ in range(3)]
    for capped in client(stack, sync_max_unfinished_per_device=2):
        assert [sync(capped, phone, b).status_code for b in batches[:2]] == [202, 202]
        refused = sync(capped, phone, batches[2])
        assert_error(refused, 429, "too_many_syncs", "at most 2")
        assert int(refused.headers["Retry-After"]) > 0
        assert sync(capped, phone, batches[1]).status_code == 200  # a replay: answered
        assert sync(capped, laptop, str(uuid.uuid4())).status_code == 202  # per device
    for capped in client(
        stack, queue_caps_by_kind={"device.sync": _unfinished(stack, "device.sync")}
    ):
        assert_error(sync(capped, laptop, str(uuid.uuid4())), 429, "queue_full", "device.sync")


def _max_connections(stack: Stack) -> int:
    with session_scope(stack.sessions) as session:
        return int(session.execute(text("SHOW max_connections")).scalar_one())


def test_single_submits_check_the_cap_side_by_side_and_never_pass_it(stack: Stack) -> None:
    """Single submits take the cap lock SHARED while the count leaves room for one job per
    backend the server allows (`max_connections`), and retry with the exclusive lock closer
    to the cap (shared/jobs/caps.py). 8 threads race 160 submits into a tenant with room
    for `max_connections + 10`: exactly that many are accepted, through both paths, and the
    rest are refused with 429 queue_full.
    Broken on purpose once (shared-path slack of 1 instead of max_connections): more jobs
    than the cap were accepted."""
    from concurrent.futures import ThreadPoolExecutor

    backends = _max_connections(stack)
    tenant = f"cap-{uuid.uuid4().hex[:6]}"
    headers = stack.headers(stack.new_api_key(tenant=tenant))
    cap = backends + 40
    job = {"kind": "diag.noop", "user_id": "u"}
    for capped in client(
        stack, queue_caps_by_kind={"diag.noop": cap}, rate_limit_per_s=1e6, rate_limit_burst=10**6
    ):
        prefill = capped.post("/v1/jobs:batch", json={"jobs": [job] * 30}, headers=headers)
        assert prefill.status_code == 202, prefill.text

        def post(_: int, http: TestClient = capped) -> int:
            return http.post("/v1/jobs", json=job, headers=headers).status_code

        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(post, range(160)))
    assert statuses.count(202) == cap - 30
    assert statuses.count(429) == 160 - (cap - 30)
    with session_scope(stack.sessions) as session:
        counted = limits_repo.unfinished_by_kind(session, tenant, ["diag.noop"])
    assert counted == {"diag.noop": cap}


@pytest.mark.parametrize(
    ("room", "outcome"), [("backends", "admitted"), ("one", "near"), ("none", "full")]
)
def test_the_shared_cap_check_decides_only_when_it_can(
    stack: Stack, room: str, outcome: str
) -> None:
    """The shared path admits only with a backend's worth of room per possible concurrent
    submit, refuses only when even one job is too many, and otherwise asks for the exact,
    exclusive check (`NearTheCap`)."""
    backends = _max_connections(stack)
    tenant = f"capd-{uuid.uuid4().hex[:6]}"
    stack.new_api_key(tenant=tenant)  # creates the tenant
    with session_scope(stack.sessions) as session:
        bind_tenant(session, tenant)
        submit_jobs(session, [NewJob(kind="diag.noop", user_id="u")] * 5, source="test")
    cap = {"backends": 5 + backends, "one": 5 + backends - 1, "none": 5}[room]
    settings = stack.settings(queue_caps_by_kind={"diag.noop": cap})
    with session_scope(stack.sessions) as session:
        bind_tenant(session, tenant)
        if outcome == "admitted":
            check_one_beside_others(session, settings, tenant, "diag.noop")
        elif outcome == "near":
            with pytest.raises(NearTheCap):
                check_one_beside_others(session, settings, tenant, "diag.noop")
        else:
            with pytest.raises(QueueFull):
                check_one_beside_others(session, settings, tenant, "diag.noop")


def test_an_expired_key_spends_no_token(stack: Stack, limited: TestClient) -> None:
    """The key check and the token are one statement (api_keys.admit): an expired key is
    refused without touching its bucket."""
    from sqlalchemy import select

    from shared.db.models import RateLimitBucket

    token = stack.new_api_key(expires_at=datetime.now(UTC) - timedelta(seconds=1))
    refused = limited.get("/v1/jobs", headers=stack.headers(token))
    assert_error(refused, 401, "api_key_expired")
    with session_scope(stack.sessions) as session:
        key_id = session.execute(
            select(ApiKey.id).where(ApiKey.prefix == token.split("_")[1])
        ).scalar_one()
        assert session.get(RateLimitBucket, key_id) is None
