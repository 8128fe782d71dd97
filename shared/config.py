"""Process settings: one frozen object, read once from `CONVEYOR_*` environment variables."""

from __future__ import annotations

import difflib
import os
import sys
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, StringConstraints, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.crypto import KeyRing
from shared.errors import PermanentError
from shared.messaging.wire_auth import Signing, WireAuth

# Values that must never reach production: documentation placeholders.
PLACEHOLDER_SECRETS = frozenset({"", "changeme", "change-me", "secret", "password", "minioadmin"})
PLACEHOLDER_MARKERS = ("replace_me", "changeme", "password")
OAUTH_PROVIDERS = ("hubspot", "salesforce", "pipedrive", "zoho", "generic")


class MasterKeysMissing(PermanentError):
    code = "master_keys_missing"


# CONVEYOR_COMPLETION_EVENTS: a kind name (or "*") to terminal states; a typo fails at start.
EventKindKey = Annotated[
    str, StringConstraints(pattern=r"^(\*|[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+)$")
]
TerminalState = Literal["succeeded", "failed", "dead", "cancelled"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CONVEYOR_", frozen=True, extra="ignore")

    env: Literal["development", "test", "production"] = "development"
    log_json: bool = False
    log_level: str = "INFO"

    # Unset URLs mean "embedded defaults" for `conveyor dev` only; other commands require them.
    database_url: str | None = None
    broker_url: str | None = None
    rabbitmq_api_url: str | None = None  # management API, for unacked depth and consumers
    # Wire authentication (docs/wire-format.md#authentication). RabbitMQ users whose messages
    # may carry any kind (internal ones too); empty: the user in the broker URL.
    wire_service_users: list[str] = Field(default_factory=list)
    # Foreign publishers (RabbitMQ users) and the tenant each publishes for, as JSON:
    # {"crm-svc": "default"}. They may send public kinds only; anyone else is dead-lettered.
    wire_publishers: dict[str, str] = Field(default_factory=dict)
    # Publishers behind shared credentials: these RabbitMQ users must HMAC-sign every body
    # with one of the signing keys ("kid:base64(32 bytes),..."); each key id maps to a tenant.
    wire_shared_publishers: list[str] = Field(default_factory=list)
    wire_signing_keys: SecretStr | None = None
    wire_signers: dict[str, str] = Field(default_factory=dict)

    s3_endpoint: str | None = None
    s3_access_key: SecretStr | None = None
    s3_secret_key: SecretStr | None = None
    s3_region: str = "us-east-1"
    bucket_prefix: str = "conveyor-"

    # Key ring for envelope encryption: "kid:base64(32 bytes),kid2:...". The first key encrypts.
    master_keys: SecretStr | None = None
    # Encrypted columns still read values in the v1 layout (bound to the row, not the column).
    # Set false after `conveyor keys reencrypt` reports 0 v1 values left (docs/security.md).
    crypto_accept_v1: bool = True

    public_url: str = "http://127.0.0.1:8000"
    ingress_host: str = "127.0.0.1"
    ingress_port: int = 8000
    max_body_bytes: int = 1_048_576
    max_batch_jobs: int = 1000
    # Limits (docs/api.md#limits). Per-API-key token bucket shared by every ingress replica
    # (kept in PostgreSQL): `rate_limit_per_s` tokens a second, bursts of `rate_limit_burst`;
    # a key's own `rate_limit_per_s`/`rate_limit_burst` columns override these.
    rate_limit_per_s: float = Field(default=20.0, gt=0)
    rate_limit_burst: int = Field(default=200, ge=1)
    # Unfinished (queued or running) jobs per tenant and kind; per-kind overrides as JSON,
    # e.g. {"diag.noop": 50000}. A submission (or a whole batch) over the cap is a 429.
    queue_cap_per_kind: int = Field(default=10_000, ge=1)
    queue_caps_by_kind: dict[str, int] = Field(default_factory=dict)
    # Declared work (e.g. diag.noop sleep_ms) one batch may carry, in seconds of worker time.
    max_batch_work_s: float = Field(default=600.0, gt=0)
    # Concurrent backups (queued or running `backup.create`) per user.
    backup_max_concurrent_per_user: int = Field(default=1, ge=1)

    # Uploads (issue #3). Per-category size overrides as JSON: {"video": 524288000}.
    upload_max_bytes: int = Field(default=50 * 1024 * 1024, ge=1)
    upload_category_max_bytes: dict[str, int] = Field(default_factory=dict)
    user_quota_bytes: int = Field(default=5 * 1024**3, ge=0)
    upload_url_ttl_s: int = Field(default=900, ge=1, le=7 * 24 * 3600)
    download_url_ttl_s: int = Field(default=900, ge=1, le=7 * 24 * 3600)
    image_max_pixels: int = Field(default=40_000_000, ge=1)
    # Image decodes at once per process (a semaphore): peak memory ~ this x one decode.
    image_decode_concurrency: int = Field(default=1, ge=1)
    # Incoming objects no pending upload needs (abandoned, refused, or sent after processing)
    # are removed by the scheduler this long after their last write; 0 = no sweep.
    incoming_sweep_interval_s: float = Field(default=300.0, ge=0)
    incoming_grace_s: float = Field(default=3600.0, ge=0)
    archive_max_entries: int = Field(default=10_000, ge=1)
    archive_max_uncompressed_bytes: int = Field(default=1024**3, ge=1)
    archive_max_ratio: float = Field(default=100.0, gt=1)

    # Backups (issue #8, docs/backups.md).
    backup_zstd_level: int = Field(default=3, ge=1, le=22)
    backup_chunk_bytes: int = Field(default=1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    backup_part_bytes: int = Field(default=16 * 1024 * 1024, ge=5 * 1024 * 1024)
    backup_batch_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    backup_schedule_every_s: float = Field(default=60.0, ge=0)  # 0: no scheduled backups
    # Device sync (docs/sync.md).
    sync_max_clock_skew_s: float = Field(default=300.0, ge=0)  # later HLCs are rejected
    sync_tombstone_retention_s: float = Field(default=30 * 24 * 3600.0, gt=0)
    sync_inline_delta_max_bytes: int = Field(default=65_536, ge=0)
    sync_delta_url_ttl_s: int = Field(default=3600, ge=1, le=7 * 24 * 3600)
    sync_upload_url_ttl_s: int = Field(default=900, ge=1, le=7 * 24 * 3600)
    sync_max_batch_bytes: int = Field(default=64 * 1024 * 1024, ge=1)
    sync_max_batch_changes: int = Field(default=100_000, ge=1)
    sync_default_interval_s: int = Field(default=300, ge=1)
    # A client waits for each sync's result (its cursor) before the next: more unfinished
    # syncs than this per device is a broken or hostile client (429 too_many_syncs).
    sync_max_unfinished_per_device: int = Field(default=4, ge=1)
    sync_delta_page_entities: int = Field(default=5_000, ge=1)  # entities per delta page
    sync_conflict_retention_s: float = Field(default=90 * 24 * 3600.0, ge=0)  # 0: keep forever
    sync_object_retention_s: float = Field(default=7 * 24 * 3600.0, gt=0)  # sync bucket objects
    sync_prune_every_s: float = Field(default=3600.0, ge=0)  # 0: the scheduler never prunes

    data_dir: Path = Path(".conveyor")

    heartbeat_interval_s: float = 10.0
    heartbeat_stale_s: float = 60.0
    # A worker's group-commit writer gathers claims and successes this long before writing,
    # once its previous batch held more than one (docs/lifecycle.md, "Group commit"); 0: off.
    # 2 x 8 threads, no-op jobs: batches of ~2 became ~2.7 with 1 ms, +5-14 % jobs/s, -7 % CPU
    # per job, loaded latency unchanged (docs/benchmarks.md, "Stop 26").
    state_writer_gather_ms: float = Field(default=1.0, ge=0, le=50)
    relay_batch_size: int = Field(default=500, ge=1, le=10_000)
    relay_idle_poll_s: float = 1.0
    # After a pass that published several rows but not a full batch, the relay waits this
    # long for more (docs/lifecycle.md, "Publishing"); 0: never. 20,000 jobs on 2 x 8: relay
    # passes of ~12 rows became ~21, scheduler CPU per job -45 %, loaded p99 latency 32-34 ->
    # 23-25 ms, p50 +0.7 ms (docs/benchmarks.md, "Stop 26").
    relay_gather_ms: float = Field(default=5.0, ge=0, le=1000)
    # The ingress publishes a job of `POST /v1/jobs` right after its commit; its outbox row
    # falls due for the relay only this long after (the fallback: RabbitMQ down, a crash).
    # Under 460 jobs/s: submit -> claimed p50 13 -> 8 ms (docs/benchmarks.md, "Stop 27");
    # off: every message waits for the relay's next pass.
    submit_handoff: bool = True
    submit_handoff_grace_s: float = Field(default=10.0, ge=2, le=3600)  # > 0014's 1 s
    outbox_retention_s: float = 3600.0
    republish_queued_after_s: float = 120.0
    # Terminal jobs and their history are deleted this long after finishing (7 days);
    # per-kind overrides as JSON, e.g. {"export.create": 2592000}.
    job_retention_s: float = Field(default=7 * 86400, gt=0)
    job_retention_by_kind: dict[str, float] = Field(default_factory=dict)
    job_retention_interval_s: float = Field(default=60.0, gt=0)  # how often the scheduler purges
    # Completion events (`conveyor.events`, job.<kind>.<state>) per kind, overriding the
    # catalogue's default (every terminal state): JSON {"kind": [states]}, "*" for every kind
    # not named, e.g. {"*": ["failed", "dead", "cancelled"]} drops success events (half the
    # outbox traffic of a successful job). docs/lifecycle.md, "Completion events".
    completion_events: dict[EventKindKey, list[TerminalState]] = Field(default_factory=dict)
    canary_interval_s: float = 300.0  # a diag.noop every N seconds; 0 disables
    # diag.noop appends start/end lines of each run here (the chaos suite's external count).
    diag_trace_path: Path | None = None
    # /healthz and /readyz of `conveyor worker` and `conveyor scheduler` (plus the
    # scheduler's /metrics); 0 = not served. Each process needs its own port on one host.
    probe_port: int = Field(default=0, ge=0, le=65535)
    # The status page (/ui) admits admin API keys and, if set, this token.
    operator_token: SecretStr | None = None
    # The ingress's /metrics needs `Authorization: Bearer <this>`. Unset: open in development
    # and test, refused (404) in production. Database gauges are re-read at most every
    # metrics_cache_s seconds, however often (and by how many scrapers) /metrics is read.
    metrics_token: SecretStr | None = None
    metrics_cache_s: float = Field(default=15.0, ge=0)
    ui_refresh_s: float = Field(default=5.0, ge=1)

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

    # Analytics exports (docs/exports.md). The pseudonym key makes anonymized exports
    # possible (32+ characters; unset: anonymize is refused with anonymization_unavailable).
    export_pseudonym_key: SecretStr | None = Field(default=None, min_length=32)
    export_ttl_s: int = Field(default=7 * 24 * 3600, ge=60)
    export_max_concurrent_per_user: int = Field(default=2, ge=1)
    export_max_daily_per_user: int = Field(default=20, ge=1)
    export_pdf_max_rows: int = Field(default=50_000, ge=1)
    export_sweep_interval_s: float = Field(default=30.0, ge=0)  # expiry + schedules; 0: off

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
        for name in ("operator_token", "metrics_token"):
            secret: SecretStr | None = getattr(self, name)
            token = secret.get_secret_value() if secret else ""
            if token and _is_placeholder(token):  # empty means unset
                raise ValueError(
                    f"CONVEYOR_{name.upper()} is a placeholder; set a real one or unset it"
                )
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
            raise MasterKeysMissing(
                "CONVEYOR_MASTER_KEYS is not set: OAuth tokens cannot be encrypted "
                "(`conveyor dev` generates a development key ring)"
            )
        return KeyRing.parse(self.master_keys.get_secret_value(), accept_v1=self.crypto_accept_v1)

    def wire_auth(self) -> WireAuth:
        """Who may publish what on the wire (shared/messaging/wire_auth)."""
        signing = None
        if self.wire_shared_publishers:
            if self.wire_signing_keys is None:
                raise ValueError("CONVEYOR_WIRE_SHARED_PUBLISHERS needs CONVEYOR_WIRE_SIGNING_KEYS")
            keys = KeyRing.parse(self.wire_signing_keys.get_secret_value())
            signing = Signing(frozenset(self.wire_shared_publishers), keys, self.wire_signers)
        return WireAuth.from_settings(
            self.broker_url, self.wire_service_users, self.wire_publishers, signing
        )

    def require_database_url(self) -> str:
        if not self.database_url:
            raise RuntimeError("CONVEYOR_DATABASE_URL is not set (only `conveyor dev` embeds one)")
        return self.database_url


def _is_placeholder(secret: str) -> bool:
    lowered = secret.strip().lower()
    return lowered in PLACEHOLDER_SECRETS or any(m in lowered for m in PLACEHOLDER_MARKERS)


# CONVEYOR_* variables read by something other than Settings (the test suite's services).
OTHER_VARIABLES = frozenset(
    {"CONVEYOR_TEST_PG_URL", "CONVEYOR_TEST_AMQP_URL", "CONVEYOR_TEST_AMQP_USER"}
)


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """One line per CONVEYOR_* variable nothing reads, with the closest known name."""
    known = {f"CONVEYOR_{name.upper()}" for name in Settings.model_fields} | OTHER_VARIABLES
    lines = []
    for name in sorted(n for n in environ if n.startswith("CONVEYOR_") and n not in known):
        # Compare without the shared prefix, or every name looks close to every other.
        close = difflib.get_close_matches(name[9:], [k[9:] for k in known], n=1)
        hint = f" (did you mean CONVEYOR_{close[0]}?)" if close else ""
        lines.append(f"warning: {name} is not a Conveyor setting and is ignored{hint}")
    return lines


@lru_cache(maxsize=1)
def warn_unknown_variables() -> None:
    """Once per process, on stderr: a misspelled variable is never silently ignored."""
    for line in unknown_variables(os.environ):
        print(line, file=sys.stderr)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    warn_unknown_variables()
    return Settings()
