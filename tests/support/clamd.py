"""A real ClamAV daemon for tests, with one custom signature instead of the public database
(which cannot be downloaded here): any file containing MALWARE_MARKER is "infected"."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from shared.embedded import free_port

MALWARE_MARKER = b"CONVEYOR-TEST-MALWARE-MARKER-7f3a"
SIGNATURE = "Conveyor.Test.Marker"


@dataclass
class Clamd:
    address: str
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(20)


def start_clamd(directory: Path, timeout_s: float = 60) -> Clamd:
    binary = shutil.which("clamd")
    if binary is None:
        raise RuntimeError("clamd is not installed (apt-get install clamav-daemon)")
    database = directory / "db"
    database.mkdir(parents=True, exist_ok=True)
    # Extended signature: name:target(0 = any file):offset(* = anywhere):hex bytes.
    (database / "conveyor-test.ndb").write_text(f"{SIGNATURE}:0:*:{MALWARE_MARKER.hex()}\n")
    port = free_port()
    config = directory / "clamd.conf"
    config.write_text(
        f"TCPSocket {port}\nTCPAddr 127.0.0.1\nDatabaseDirectory {database}\nForeground yes\n"
        f"LogFile {directory / 'clamd.log'}\nUser root\nStreamMaxLength 60M\n"
    )
    log = (directory / "clamd.out").open("wb")
    process = subprocess.Popen([binary, "-c", str(config)], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"clamd exited; see {directory}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
                conn.sendall(b"zPING\0")
                if conn.recv(16).startswith(b"PONG"):
                    return Clamd(f"127.0.0.1:{port}", process)
        except OSError:
            time.sleep(0.3)
    process.kill()
    raise RuntimeError("clamd did not start in time")
