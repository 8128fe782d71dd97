"""Settings of issue #13: probe port and the status page's operator token."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from shared.config import Settings

PRODUCTION = {
    "env": "production",
    "database_url": "postgresql+psycopg://u@db/conveyor",
    "broker_url": "amqp://u:p@mq/",
    "s3_endpoint": "http://s3:9000",
    "s3_secret_key": "3c1f0e8b9a7d6c5b4a3f2e1d",
    "master_keys": "k1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
}


def test_a_placeholder_operator_token_is_refused_in_production() -> None:
    with pytest.raises(ValidationError, match="CONVEYOR_OPERATOR_TOKEN"):
        Settings(**PRODUCTION, operator_token="changeme")


def test_an_empty_operator_token_means_unset() -> None:
    assert Settings(**PRODUCTION, operator_token="").operator_token is not None  # accepted
    assert Settings(**PRODUCTION).probe_port == 0


def test_probe_port_is_a_port() -> None:
    with pytest.raises(ValidationError):
        Settings(probe_port=70000)
