"""Optional malware scanning of uploads: off unless CONVEYOR_CLAMD_ADDRESS names a clamd."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Protocol

from clamav_client.clamd import ClamdError, ClamdNetworkSocket

from shared.config import Settings
from shared.errors import TransientError


class MalwareScanner(Protocol):
    def scan(self, data: bytes) -> str | None:
        """The signature found, or None when the bytes are clean."""
        ...


@dataclass(frozen=True)
class ClamdScanner:
    host: str
    port: int
    timeout_s: float = 30.0

    @classmethod
    def parse(cls, address: str) -> ClamdScanner:
        host, sep, port = address.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"CONVEYOR_CLAMD_ADDRESS must be host:port, got {address!r}")
        return cls(host, int(port))

    def scan(self, data: bytes) -> str | None:
        try:
            client = ClamdNetworkSocket(self.host, self.port, timeout=self.timeout_s)
            result = client.instream(io.BytesIO(data))
        except (ClamdError, OSError) as exc:
            # A scanner outage must not let files through unscanned: retry later.
            raise TransientError(f"malware scanner unavailable: {exc}", retry_after=30) from exc
        status, signature = result.get("stream", ("ERROR", "no result"))
        if status == "FOUND":
            return signature or "unknown"
        if status != "OK":
            raise TransientError(f"malware scanner error: {signature}", retry_after=30)
        return None


def scanner_from_settings(settings: Settings) -> MalwareScanner | None:
    return ClamdScanner.parse(settings.clamd_address) if settings.clamd_address else None
