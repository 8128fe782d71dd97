"""The baseline of bench/ingress.py: a bare FastAPI app whose POST /v1/jobs does one INSERT +
COMMIT into a plain table, served by uvicorn exactly as `conveyor ingress` serves the real
one (`uvicorn.run(app, host, port, log_level="warning")`: one worker, the same defaults).

The same kind of route as the ingress's (a sync `def`, run in the thread pool), the same body
model shape, the same engine settings (shared/db/engine.py, the ingress's pool), on the same
database (`CONVEYOR_DATABASE_URL`). No authentication, rate limit, caps, outbox or tenancy:
the floor of "accept a job durably over HTTP".

    CONVEYOR_DATABASE_URL=... python -m bench._bare_ingress --port 8001
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from pydantic import BaseModel, Field
from sqlalchemy import text

from shared.db.engine import make_engine
from workers.ingress.app import INGRESS_DB_POOL

TABLE = "bench_bare_jobs"
CREATE_TABLE = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    kind text NOT NULL,
    user_id text NOT NULL,
    payload jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
)
"""
_INSERT = text(
    f"INSERT INTO {TABLE} (kind, user_id, payload) "
    "VALUES (:kind, :user_id, CAST(:payload AS jsonb)) RETURNING id, created_at"
)


class BareJobIn(BaseModel):
    kind: str = Field(max_length=100)
    user_id: str = Field(max_length=200)
    payload: dict[str, Any] = Field(default_factory=dict)


class BareJobOut(BaseModel):
    id: str
    kind: str
    state: str
    created_at: str


def create_app(database_url: str) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(
            database_url,
            pool_size=INGRESS_DB_POOL,
            max_overflow=0,
            application_name="bench-bare-ingress",
        )
        app.state.engine = engine
        yield
        engine.dispose()

    app = FastAPI(title="bare ingress (bench baseline)", lifespan=lifespan)

    @app.post("/v1/jobs", status_code=202, response_model=BareJobOut)
    def submit(body: BareJobIn, request: Request) -> BareJobOut:
        with request.app.state.engine.begin() as conn:  # one INSERT, one COMMIT
            row = conn.execute(
                _INSERT,
                {"kind": body.kind, "user_id": body.user_id, "payload": json.dumps(body.payload)},
            ).one()
        return BareJobOut(
            id=str(row.id), kind=body.kind, state="queued", created_at=row.created_at.isoformat()
        )

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description="bare FastAPI INSERT + COMMIT route")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = create_app(os.environ["CONVEYOR_DATABASE_URL"])
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
