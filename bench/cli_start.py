"""CLI start time and `conveyor dev` start/stop times. Prints figures; asserts nothing.

- `conveyor --help` and `conveyor status` wall time (median of N runs), `status` against a
  fresh database on the local PostgreSQL; `python -c "import workers.cli"` alone as the
  import floor, and a bare `python -c pass` as the same-run baseline.
- `conveyor dev` on embedded defaults in a temporary data directory: first start (initdb,
  migrations) and a restart, each until `/healthz` answers; then Ctrl-C (SIGINT) until exit.

    python -m bench.cli_start --runs 5
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from shared.embedded import free_port
from tests.support.services import create_database, drop_database

CLI = [sys.executable, "-m", "workers.cli"]


def wall(args: list[str], env: dict[str, str], runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(args, env=env, capture_output=True, check=False, timeout=120)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def dev_cycle(data_dir: Path, env: dict[str, str]) -> tuple[float, float]:
    """Seconds until /healthz answers, and seconds from SIGINT until the process exits."""
    port = free_port()
    env = {**env, "CONVEYOR_DATA_DIR": str(data_dir)}
    started = time.perf_counter()
    process = subprocess.Popen(
        [*CLI, "dev", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=data_dir.parent,
    )
    try:
        while True:
            if process.poll() is not None:
                raise RuntimeError("conveyor dev exited during start-up")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        ready = time.perf_counter() - started
        stopping = time.perf_counter()
        process.send_signal(signal.SIGINT)
        process.wait(120)
        return ready, time.perf_counter() - stopping
    finally:
        if process.poll() is None:
            process.kill()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    url = create_database("conveyor_bench")
    try:
        db_env = {**env, "CONVEYOR_DATABASE_URL": url}
        floor = wall([sys.executable, "-c", "pass"], env, args.runs)
        imports = wall([sys.executable, "-c", "import workers.cli"], env, args.runs)
        help_s = wall([*CLI, "--help"], env, args.runs)
        status_s = wall([*CLI, "status"], db_env, args.runs)
    finally:
        drop_database(url)
    print(f"python -c pass (baseline)   {floor:6.2f} s")
    print(f"import workers.cli          {imports:6.2f} s  ({imports / floor:.1f}x baseline)")
    print(f"conveyor --help             {help_s:6.2f} s  ({help_s / floor:.1f}x baseline)")
    print(f"conveyor status             {status_s:6.2f} s  ({status_s / floor:.1f}x baseline)")
    with tempfile.TemporaryDirectory(prefix="conveyor-bench-") as tmp:
        data = Path(tmp) / ".conveyor"
        first, stop1 = dev_cycle(data, env)
        again, stop2 = dev_cycle(data, env)
    print(f"conveyor dev first start    {first:6.2f} s  (until /healthz answers)")
    print(f"conveyor dev restart        {again:6.2f} s")
    print(f"conveyor dev Ctrl-C → exit  {stop1:6.2f} s / {stop2:6.2f} s")


if __name__ == "__main__":
    main()
