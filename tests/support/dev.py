"""`conveyor dev` as a subprocess, the way a newcomer runs it: in a folder, output to a log."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from shared.embedded import free_port
from tests.support.services import wait_for

READY = "Conveyor is ready"


def clean_env(**extra: str) -> dict[str, str]:
    """The caller's environment without any CONVEYOR_* variable, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    env.update(COLUMNS="200", **extra)  # rich wraps at 80 columns otherwise
    return env


@dataclass
class DevProcess:
    folder: Path
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @classmethod
    def start(cls, folder: Path, env: dict[str, str], port: int | None = None) -> DevProcess:
        folder.mkdir(parents=True, exist_ok=True)
        port = port or free_port()
        log = folder / f"dev-{port}.log"
        process = subprocess.Popen(
            [sys.executable, "-m", "workers.cli", "dev", "--port", str(port), "--threads", "2"],
            cwd=folder,
            env=env,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,  # our SIGINT reaches dev only, as a terminal's would its group
        )
        return cls(folder, port, process, log)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self, timeout: float = 240) -> str:
        def ready() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"conveyor dev exited:\n{self.output()[-3000:]}")
            return READY in self.output()

        wait_for(ready, timeout=timeout, interval=0.2, what="the dev banner")
        return self.output()

    def token(self) -> str:
        found = re.search(r"API key: (cvk_\S+)", self.output())
        assert found, self.output()
        return found.group(1)

    def banner_curl(self) -> str:
        found = re.search(r"^  (curl .*)$", self.output(), re.MULTILINE)
        assert found, self.output()
        return found.group(1)

    def stop(self, timeout: float = 120) -> int:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        return self.process.returncode


def conveyor(
    folder: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """The CLI run in `folder` with no CONVEYOR_* variables: it must find the dev stack itself."""
    return subprocess.run(
        [sys.executable, "-m", "workers.cli", *args],
        cwd=folder,
        env=env if env is not None else clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
