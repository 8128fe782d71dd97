"""One contract, two stores: the in-memory fake must behave like real S3 (SeaweedFS)."""

from __future__ import annotations

import secrets
from datetime import timedelta

import httpx
import pytest

from shared.embedded import EmbeddedS3
from shared.storage.base import ObjectNotFound, ObjectStore
from shared.storage.memory import MemoryStore
from shared.storage.s3 import S3Store

pytestmark = pytest.mark.integration


@pytest.fixture(params=["memory", "seaweedfs"])
def store(request: pytest.FixtureRequest) -> ObjectStore:
    if request.param == "memory":
        return MemoryStore()
    server: EmbeddedS3 = request.getfixturevalue("s3_server")
    return S3Store.connect(server.endpoint, server.access_key, server.secret_key)


@pytest.fixture
def bucket(store: ObjectStore) -> str:
    name = f"test-{secrets.token_hex(4)}"
    store.ensure_bucket(name)
    store.ensure_bucket(name)  # idempotent
    return name


def test_put_get_stat_copy_delete(store: ObjectStore, bucket: str) -> None:
    info = store.put_bytes(bucket, "a/b.txt", b"hello world", "text/plain")
    assert info.size == 11
    assert store.get_bytes(bucket, "a/b.txt") == b"hello world"
    assert store.get_bytes(bucket, "a/b.txt", max_bytes=5) == b"hello"
    stat = store.stat(bucket, "a/b.txt")
    assert (stat.size, stat.content_type) == (11, "text/plain")
    copied = store.copy(bucket, "a/b.txt", bucket, "c.txt")
    assert copied.size == 11
    store.delete(bucket, "a/b.txt")
    store.delete(bucket, "a/b.txt")  # deleting twice is fine
    with pytest.raises(ObjectNotFound):
        store.stat(bucket, "a/b.txt")
    with pytest.raises(ObjectNotFound):
        store.get_bytes(bucket, "a/b.txt")
    assert store.get_bytes(bucket, "c.txt") == b"hello world"


def test_presigned_urls_work_without_credentials(s3_server: EmbeddedS3) -> None:
    store = S3Store.connect(s3_server.endpoint, s3_server.access_key, s3_server.secret_key)
    bucket = f"test-{secrets.token_hex(4)}"
    store.ensure_bucket(bucket)
    put_url = store.presigned_put(bucket, "up.bin", timedelta(minutes=5))
    assert httpx.put(put_url, content=b"\x00\x01\x02", timeout=60).status_code == 200
    get_url = store.presigned_get(bucket, "up.bin", timedelta(minutes=5))
    assert httpx.get(get_url, timeout=60).content == b"\x00\x01\x02"
    unsigned = get_url.split("?")[0]
    assert httpx.get(unsigned, timeout=60).status_code == 403  # buckets are private


def test_wrong_credentials_are_refused(s3_server: EmbeddedS3) -> None:
    store = S3Store.connect(s3_server.endpoint, s3_server.access_key, "not-the-secret")
    with pytest.raises(Exception, match=r"(?i)signature|denied|forbidden"):
        store.ensure_bucket(f"test-{secrets.token_hex(4)}")
