"""Process settings: one frozen object, read once from `CONVEYOR_*` environment variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.crypto import KeyRing

# Values that must never reach production: documentation placeholders.
PLACEHOLDER_SECRETS = frozenset({"", "changeme", "change-me", "secret", "password", "minioadmin"})
PLACEHOLDER_MARKERS = ("replace_me", "changeme", "password")
OAUTH_PROVIDERS = ("hubspot", "salesforce", "pipedrive", "zoho", "generic")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CONVEYOR_", frozen=True, extra="ignore")

    env: Literal["development", "test", "production"] = "development"
    log_json: bool = False
    log_level: str = "INFO"

    # Unset URLs mean "embedded defaults" for `conveyor dev` only; other commands require them.
    database_url: str | None = None
    broker_url: str | None = None
    rabbitmq_api_url: str | None = None  # management API, for unacked depth and consumers

    s3_endpoint: str | None = None
    s3_access_key: SecretStr | None = None
    s3_secret_key: SecretStr | None = None
    s3_region: str = "us-east-1"
    bucket_prefix: str = "conveyor-"

    # Key ring for envelope encryption: "kid:base64(32 bytes),kid2:...". The first key encrypts.
    master_keys: SecretStr | None = None

    public_url: str = "http://127.0.0.1:8000"
    ingress_host: str = "127.0.0.1"
    ingress_port: int = 8000
    max_body_bytes: int = 1_048_576
    max_batch_jobs: int = 1000

    # Uploads (issue #3). Per-category size overrides as JSON: {"video": 524288000}.
    upload_max_bytes: int = Field(default=50 * 1024 * 1024, ge=1)
    upload_category_max_bytes: dict[str, int] = Field(default_factory=dict)
    user_quota_bytes: int = Field(default=5 * 1024**3, ge=0)
    upload_url_ttl_s: int = Field(default=900, ge=1, le=7 * 24 * 3600)
    download_url_ttl_s: int = Field(default=900, ge=1, le=7 * 24 * 3600)
    image_max_pixels: int = Field(default=100_000_000, ge=1)
    archive_max_entries: int = Field(default=10_000, ge=1)
    archive_max_uncompressed_bytes: int = Field(default=1024**3, ge=1)
    archive_max_ratio: float = Field(default=100.0, gt=1)

    data_dir: Path = Path(".conveyor")

    heartbeat_interval_s: float = 10.0
    heartbeat_stale_s: float = 60.0
    relay_batch_size: int = Field(default=500, ge=1, le=10_000)
    relay_idle_poll_s: float = 1.0
    outbox_retention_s: float = 3600.0
    republish_queued_after_s: float = 120.0
    # Terminal jobs and their history are deleted this long after finishing (7 days);
    # per-kind overrides as JSON, e.g. {"export.create": 2592000}.
    job_retention_s: float = Field(default=7 * 86400, gt=0)
    job_retention_by_kind: dict[str, float] = Field(default_factory=dict)
    canary_interval_s: float = 300.0  # a diag.noop every N seconds; 0 disables
    # diag.noop appends start/end lines of each run here (the chaos suite's external count).
    diag_trace_path: Path | None = None

    # OAuth connections (docs/oauth.md). A provider without client id and secret is
    # "not configured". Redirect URI: public_url + /v1/oauth/<provider>/callback.
    # Malware scanning of uploads (clamd INSTREAM), e.g. "127.0.0.1:3310"; unset = off.
    clamd_address: str | None = None

    oauth_hubspot_client_id: str | None = None
    oauth_hubspot_client_secret: SecretStr | None = None
    oauth_hubspot_scopes: str | None = None
    oauth_hubspot_token_url: str | None = None  # v1 is deprecated in Feb 2027: override here
    oauth_salesforce_client_id: str | None = None
    oauth_salesforce_client_secret: SecretStr | None = None
    oauth_salesforce_scopes: str | None = None
    oauth_salesforce_login_host: str | None = None  # test.salesforce.com or a My Domain host
    oauth_salesforce_session_lifetime_s: float | None = None  # the org's session timeout
    oauth_pipedrive_client_id: str | None = None
    oauth_pipedrive_client_secret: SecretStr | None = None
    oauth_pipedrive_scopes: str | None = None
    oauth_zoho_client_id: str | None = None
    oauth_zoho_client_secret: SecretStr | None = None
    oauth_zoho_scopes: str | None = None
    oauth_generic_client_id: str | None = None
    oauth_generic_client_secret: SecretStr | None = None
    oauth_generic_scopes: str | None = None
    oauth_generic_authorize_url: str | None = None
    oauth_generic_token_url: str | None = None
    oauth_generic_revoke_url: str | None = None
    oauth_generic_auth_method: str = "client_secret_basic"
    oauth_refresh_margin_s: float = Field(default=300.0, ge=0)
    oauth_sweep_interval_s: float = Field(default=60.0, ge=0)  # 0: no periodic sweep
    oauth_state_ttl_s: float = Field(default=600.0, gt=0)
    oauth_http_timeout_s: float = Field(default=15.0, gt=0)

    @model_validator(mode="after")
    def _refuse_placeholders_outside_development(self) -> Settings:
        if self.env != "production":
            return self
        for name in ("s3_secret_key", "master_keys"):
            value = getattr(self, name)
            if value is None or _is_placeholder(value.get_secret_value()):
                raise ValueError(
                    f"CONVEYOR_{name.upper()} must be set to a real secret in production"
                )
        for name in ("database_url", "broker_url", "s3_endpoint"):
            if not getattr(self, name):
                raise ValueError(f"CONVEYOR_{name.upper()} is required in production")
        self._refuse_placeholder_oauth_secrets()
        return self

    def _refuse_placeholder_oauth_secrets(self) -> None:
        """An OAuth client secret may be unset (provider not configured), never a placeholder."""
        for name in OAUTH_PROVIDERS:
            secret: SecretStr | None = getattr(self, f"oauth_{name}_client_secret")
            value = secret.get_secret_value() if secret is not None else ""
            if value and _is_placeholder(value):
                raise ValueError(
                    f"CONVEYOR_OAUTH_{name.upper()}_CLIENT_SECRET is a placeholder; "
                    "set the real secret or leave it empty"
                )

    def key_ring(self) -> KeyRing:
        if self.master_keys is None:
            raise RuntimeError("CONVEYOR_MASTER_KEYS is not set")
        return KeyRing.parse(self.master_keys.get_secret_value())

    def require_database_url(self) -> str:
        if not self.database_url:
            raise RuntimeError("CONVEYOR_DATABASE_URL is not set (only `conveyor dev` embeds one)")
        return self.database_url


def _is_placeholder(secret: str) -> bool:
    lowered = secret.strip().lower()
    return lowered in PLACEHOLDER_SECRETS or any(m in lowered for m in PLACEHOLDER_MARKERS)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
