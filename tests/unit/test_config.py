"""Settings: environment prefix, production refuses placeholders and missing URLs."""

from __future__ import annotations

import base64
import os

import pytest
from pydantic import ValidationError

from shared.config import Settings

REAL_KEY = "k1:" + base64.b64encode(os.urandom(32)).decode()
PRODUCTION = {
    "env": "production",
    "database_url": "postgresql://db/x",
    "broker_url": "amqp://mq/",
    "s3_endpoint": "http://s3:9000",
    "s3_access_key": "conveyor",
    "s3_secret_key": "a-real-secret-value-123",
    "master_keys": REAL_KEY,
}


def test_reads_prefixed_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_RELAY_BATCH_SIZE", "42")
    monkeypatch.setenv("CONVEYOR_DATABASE_URL", "postgresql://x/y")
    settings = Settings()
    assert settings.relay_batch_size == 42
    assert settings.database_url == "postgresql://x/y"


def test_production_accepts_real_values() -> None:
    settings = Settings(**PRODUCTION)  # type: ignore[arg-type]
    assert settings.key_ring().current_kid == "k1"


@pytest.mark.parametrize(
    "override",
    [
        {"s3_secret_key": "minioadmin"},
        {"s3_secret_key": "REPLACE_ME"},
        {"master_keys": "k1:REPLACE_ME"},
        {"master_keys": None},
        {"database_url": None},
        {"broker_url": None},
        {"oauth_zoho_client_id": "z", "oauth_zoho_client_secret": "REPLACE_ME"},
        {"oauth_generic_client_secret": "changeme"},
    ],
)
def test_production_refuses_placeholders_and_gaps(override: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        Settings(**{**PRODUCTION, **override})  # type: ignore[arg-type]


def test_oauth_settings_from_prefixed_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_OAUTH_GENERIC_CLIENT_ID", "cid")
    monkeypatch.setenv("CONVEYOR_OAUTH_GENERIC_CLIENT_SECRET", "a-real-oauth-secret")
    monkeypatch.setenv("CONVEYOR_OAUTH_GENERIC_TOKEN_URL", "https://idp.example.com/token")
    settings = Settings(**{**PRODUCTION, "oauth_pipedrive_client_secret": ""})  # type: ignore[arg-type]
    assert settings.oauth_generic_client_id == "cid"
    assert settings.oauth_generic_client_secret is not None
    assert "a-real-oauth-secret" not in repr(settings)
    assert settings.oauth_generic_token_url == "https://idp.example.com/token"


def test_settings_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(ValidationError):
        settings.relay_batch_size = 1  # type: ignore[misc]


def test_provider_endpoints_follow_configuration() -> None:
    from shared.oauth.clients import _provider
    from shared.oauth.providers import ProviderName

    settings = Settings(
        oauth_hubspot_token_url="https://api.hubapi.com/oauth/2026-03/token",
        oauth_salesforce_login_host="test.salesforce.com",
        oauth_salesforce_session_lifetime_s=900,
    )
    hubspot = _provider(settings, ProviderName.HUBSPOT, None)
    assert hubspot.token_url == "https://api.hubapi.com/oauth/2026-03/token"
    salesforce = _provider(settings, ProviderName.SALESFORCE, None)
    assert salesforce.token_url == "https://test.salesforce.com/services/oauth2/token"
    assert salesforce.fallback_access_token_lifetime.total_seconds() == 900
    default = _provider(Settings(), ProviderName.HUBSPOT, None)
    assert default.token_url == "https://api.hubapi.com/oauth/v1/token"


@pytest.mark.parametrize(
    "value",
    [
        {"*": ["suceeded"]},  # a typo would silently switch success events off
        {"*": ["running"]},  # not a terminal state: there is no such event
        {"Diag Noop": ["failed"]},  # not a kind name
    ],
)
def test_completion_events_refuse_unknown_states_and_bad_kind_names(value: object) -> None:
    with pytest.raises(ValidationError):
        Settings(completion_events=value)  # type: ignore[arg-type]
    good = Settings(completion_events={"*": ["failed", "dead"], "export.create": []})  # type: ignore[arg-type]
    assert good.completion_events["*"] == ["failed", "dead"]
