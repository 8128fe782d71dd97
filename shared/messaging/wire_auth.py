"""Who published a message, and may they send this kind? (docs/wire-format.md#authentication)

The publisher is RabbitMQ's `user_id` message property. RabbitMQ refuses a publish whose
`user_id` is not the connection's user (unless that user has the `impersonator` tag, which no
Conveyor user ever gets), so the property is as trustworthy as the broker's credentials.

- Conveyor's own service users (the relay, the workers) may send every kind.
- A registered foreign publisher may send public kinds only, for the tenant it is mapped to;
  an internal kind from it is refused as `forbidden_kind`.
- A shared publisher user (several services behind one set of credentials) must also sign
  each body (HMAC-SHA256, header `x-conveyor-signature`); the signing key id names the
  service and its tenant. Missing, unknown or wrong signatures: `bad_signature`.
- No `user_id`, or one nobody registered: `unauthenticated_publisher`.

Pure: no I/O, decided per message in the consumer before anything touches the database.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from shared.crypto import CryptoError, KeyRing, verify
from shared.errors import InvalidMessage

DEFAULT_TENANT = "default"
AMQP_DEFAULT_USER = "guest"  # what RabbitMQ assumes for a URL without credentials
SIGNATURE_HEADER = "x-conveyor-signature"


def broker_user(url: str) -> str:
    """The RabbitMQ user a broker URL connects as (the `user_id` its messages must carry)."""
    user = urlsplit(url).username
    return unquote(user) if user else AMQP_DEFAULT_USER


@dataclass(frozen=True)
class Origin:
    """An authenticated publisher, and the tenant its jobs belong to."""

    publisher: str  # the RabbitMQ user, or "<user>/<key id>" for a signed message
    tenant_id: str
    service: bool  # one of Conveyor's own users: internal kinds allowed


@dataclass(frozen=True)
class Signing:
    """Publishers behind shared credentials: which users, their keys, each key's tenant."""

    users: frozenset[str]
    keys: KeyRing
    tenants: Mapping[str, str]  # key id → tenant id

    def origin(self, publisher: str, signature: str | None, body: bytes) -> Origin:
        if not signature:
            raise InvalidMessage(
                f"publisher {publisher!r} must sign its messages ({SIGNATURE_HEADER})",
                code="bad_signature",
            )
        try:
            kid = verify(self.keys, signature, body)
        except CryptoError as exc:
            raise InvalidMessage(str(exc), code="bad_signature") from None
        tenant = self.tenants.get(kid)
        if tenant is None:
            raise InvalidMessage(f"key {kid!r} is not mapped to a tenant", code="bad_signature")
        return Origin(f"{publisher}/{kid}", tenant, service=False)


@dataclass(frozen=True)
class WireAuth:
    service_users: frozenset[str]
    publishers: Mapping[str, str] = field(default_factory=dict)  # foreign user → tenant id
    signing: Signing | None = None

    @classmethod
    def from_settings(
        cls,
        broker_url: str | None,
        service_users: list[str],
        publishers: Mapping[str, str],
        signing: Signing | None = None,
    ) -> WireAuth:
        users = frozenset(service_users) or frozenset(
            {broker_user(broker_url)} if broker_url else set()
        )
        shared = signing.users if signing else frozenset()
        overlap = (users & (set(publishers) | shared)) | (shared & set(publishers))
        if overlap:
            raise ValueError(f"wire users listed in more than one role: {sorted(overlap)}")
        return cls(users, dict(publishers), signing)

    def authenticate(
        self, publisher: str | None, *, signature: str | None = None, body: bytes = b""
    ) -> Origin:
        """The publisher's origin, or InvalidMessage (`unauthenticated_publisher`,
        `bad_signature`)."""
        if not publisher:
            raise InvalidMessage(
                "the message has no user_id property: publisher unknown",
                code="unauthenticated_publisher",
            )
        if publisher in self.service_users:
            return Origin(publisher, DEFAULT_TENANT, service=True)
        if self.signing is not None and publisher in self.signing.users:
            return self.signing.origin(publisher, signature, body)
        tenant = self.publishers.get(publisher)
        if tenant is None:
            raise InvalidMessage(
                f"publisher {publisher!r} is not registered", code="unauthenticated_publisher"
            )
        return Origin(publisher, tenant, service=False)


def check_kind(origin: Origin, kind: str, *, public: bool) -> None:
    """Internal kinds only from service users; InvalidMessage(`forbidden_kind`) otherwise."""
    if not public and not origin.service:
        raise InvalidMessage(
            f"kind {kind!r} is internal: only Conveyor's service users may publish it",
            code="forbidden_kind",
        )


def tenant_for(origin: Origin, named: str | None) -> str:
    """The tenant a message's job runs under. Conveyor's own publishers name it in the
    envelope; a foreign publisher's jobs belong to its registered tenant, and naming another
    one is refused (`forbidden_tenant`), never silently re-homed."""
    if origin.service:
        return named or DEFAULT_TENANT
    if named is not None and named != origin.tenant_id:
        raise InvalidMessage(
            f"publisher {origin.publisher!r} may not publish for tenant {named!r}",
            code="forbidden_tenant",
        )
    return origin.tenant_id
