"""Conveyor wired to the loopback OAuth server as its `generic` provider, for one module."""

from __future__ import annotations

import base64
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi.testclient import TestClient

from shared.config import Settings
from shared.crypto import KeyRing
from shared.db.engine import session_scope
from shared.db.models import OAuthConnection
from shared.db.repos import oauth as oauth_repo
from shared.oauth import tokens
from tests.oauth_server.harness import OidcServer, follow_authorization, start_oidc_server
from tests.support.stack import Stack
from workers.ingress.app import create_app

PUBLIC_URL = "http://127.0.0.1:9"  # never requested: the callback is replayed via TestClient
REDIRECT_URI = f"{PUBLIC_URL}/v1/oauth/generic/callback"
CLIENT_ID = "conveyor-generic"
CLIENT_SECRET = "generic-secret-0123456789abcdef"
AUTH_METHOD = "client_secret_basic"
SCOPES = "openid offline_access"


def client_metadata() -> dict[str, Any]:
    return {
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "redirect_uris": [REDIRECT_URI],
        "token_endpoint_auth_method": AUTH_METHOD,
    }


def new_master_keys() -> str:
    return f"t1:{base64.b64encode(os.urandom(32)).decode()}"


@dataclass
class OAuthStack:
    stack: Stack
    server: OidcServer
    master_keys: str
    margin_s: float
    sweep_s: float
    secret: str = CLIENT_SECRET
    _client: TestClient | None = field(default=None, repr=False)

    def env(self) -> dict[str, str]:
        """CONVEYOR_* variables for worker and scheduler subprocesses."""
        return {f"CONVEYOR_{k.upper()}": str(v) for k, v in self.oauth_values().items()}

    def oauth_values(self) -> dict[str, str | float]:
        return {
            "master_keys": self.master_keys,
            "public_url": PUBLIC_URL,
            "oauth_generic_client_id": CLIENT_ID,
            "oauth_generic_client_secret": self.secret,
            "oauth_generic_authorize_url": self.server.authorize_url,
            "oauth_generic_token_url": self.server.token_url,
            "oauth_generic_revoke_url": self.server.revocation_url,
            "oauth_generic_auth_method": AUTH_METHOD,
            "oauth_generic_scopes": SCOPES,
            "oauth_refresh_margin_s": self.margin_s,
            "oauth_sweep_interval_s": self.sweep_s,
        }

    def settings(self, **override: Any) -> Settings:
        values: dict[str, Any] = {
            "env": "test",
            "database_url": self.stack.db_url,
            "broker_url": self.stack.amqp_url,
            **self.oauth_values(),
            **override,
        }
        return Settings(**values)

    @property
    def ring(self) -> KeyRing:
        return KeyRing.parse(self.master_keys)

    @property
    def client(self) -> TestClient:
        if self._client is None:
            self._client = TestClient(create_app(self.settings(), self.stack.sessions))
            self._client.__enter__()
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.__exit__(None, None, None)

    def callback_query(self, user_id: str, token: str | None = None) -> str:
        """Authorize through the ingress and the provider; the callback's query string."""
        response = self.client.get(
            "/v1/oauth/generic/authorize",
            params={"user_id": user_id},
            headers=self.stack.headers(token),
            follow_redirects=False,
        )
        assert response.status_code == 302, response.text
        target = follow_authorization(response.headers["location"], redirect_uri=REDIRECT_URI)
        return urlsplit(target).query

    def connect(self, user_id: str | None = None, token: str | None = None) -> dict[str, Any]:
        query = self.callback_query(user_id or f"user-{uuid.uuid4().hex[:8]}", token)
        response = self.client.get(f"/v1/oauth/generic/callback?{query}")
        assert response.status_code == 200, response.text
        return dict(response.json())

    def row(self, connection_id: str | uuid.UUID) -> OAuthConnection:
        with session_scope(self.stack.sessions) as session:
            connection = oauth_repo.get(session, uuid.UUID(str(connection_id)))
            assert connection is not None
            return connection

    def tokens_of(self, connection_id: str | uuid.UUID) -> tuple[str | None, str | None]:
        """(access token, refresh token) as stored, decrypted."""
        row = self.row(connection_id)
        return tokens.access_token(self.ring, row), tokens.refresh_token(self.ring, row)

    def submit_refresh(
        self, connection_id: str, *, force: bool = False, user_id: str | None = None
    ) -> dict[str, Any]:
        """As the sweeper does: for the connection's own user (or `user_id`, to test that)."""
        return self.stack.submit_internal(
            "oauth.refresh",
            {"connection_id": connection_id, "force": force},
            user_id=user_id or self.row(connection_id).user_id,
        )


@contextmanager
def running_oauth_stack(
    stack: Stack,
    workdir: Path,
    *,
    access_token_ttl_s: int,
    margin_s: float,
    sweep_s: float,
    worker_processes: int,
    worker_threads: int,
    **scheduler_env: str,
) -> Iterator[OAuthStack]:
    """A real oidc-provider (rotating refresh tokens) wired to a scheduler and an oauth pool."""
    server = start_oidc_server(
        workdir,
        clients=[client_metadata()],
        rotate_refresh_tokens=True,
        access_token_ttl_s=access_token_ttl_s,
    )
    wired = OAuthStack(stack, server, new_master_keys(), margin_s=margin_s, sweep_s=sweep_s)
    stack.start_scheduler(**scheduler_env, **wired.env())
    stack.start_worker("oauth", processes=worker_processes, threads=worker_threads, **wired.env())
    try:
        yield wired
    finally:
        wired.close()
        server.stop()
