"""CLI start time and `conveyor dev` start/stop times, before vs after, in the same run.

"Before" is a snapshot of a git ref (default `main`, extracted with `git archive` into a temp
dir and put first on PYTHONPATH, same interpreter and packages); "after" is this checkout.
Measurements alternate between the two so machine load hits both alike. Prints medians and
after/before ratios; asserts nothing.

- `python -c pass` (interpreter floor), `import workers.cli`, `conveyor --help`,
  `conveyor status` (against a fresh database on the local PostgreSQL);
- `conveyor dev` on embedded defaults in a temporary data directory: seconds until
  `/healthz` answers and until the banner is printed (first start with initdb, then a
  restart), and seconds from SIGINT (Ctrl-C) to exit.

    python -m bench.cli_start --runs 5 [--before main]
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
from collections import defaultdict
from pathlib import Path

import httpx

from shared.embedded import free_port
from tests.support.services import create_database, drop_database

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "workers.cli"]
BANNERS = ("Conveyor is ready", "Conveyor is running")  # after / before


def snapshot(ref: str, into: Path) -> Path:
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref], capture_output=True)
    archive.check_returncode()
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


def env_for(code: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    env.update(PYTHONPATH=str(code), PYTHONDONTWRITEBYTECODE="1", COLUMNS="200", **extra)
    return env


def wall(args: list[str], env: dict[str, str], cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run(args, env=env, cwd=cwd, capture_output=True, check=False, timeout=120)
    return time.perf_counter() - started


def dev_cycle(code: Path, folder: Path) -> tuple[float, float, float]:
    """Seconds until /healthz answers, until the banner, and from SIGINT to exit."""
    port, log = free_port(), folder / "dev.log"
    started = time.perf_counter()
    process = subprocess.Popen(
        [*CLI, "dev", "--port", str(port)],
        env=env_for(code, CONVEYOR_DATA_DIR=str(folder / ".conveyor")),
        cwd=folder,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    healthy = banner = None
    try:
        while healthy is None or banner is None:
            if process.poll() is not None:
                raise RuntimeError(f"conveyor dev exited: {log.read_text()[-2000:]}")
            if banner is None and any(b in log.read_text(errors="replace") for b in BANNERS):
                banner = time.perf_counter() - started
            if healthy is None and _answers(port):
                healthy = time.perf_counter() - started
            time.sleep(0.05)
        stopping = time.perf_counter()
        process.send_signal(signal.SIGINT)
        process.wait(120)
        return healthy, banner, time.perf_counter() - stopping
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)


def _answers(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def measure(codes: dict[str, Path], runs: int, tmp: Path) -> dict[str, dict[str, list[float]]]:
    results: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    url = create_database("conveyor_bench")
    try:
        for _ in range(runs):
            for name, code in codes.items():  # alternate: load hits both alike
                env, db_env = env_for(code), env_for(code, CONVEYOR_DATABASE_URL=url)
                row = results[name]
                row["python -c pass"].append(wall([sys.executable, "-c", "pass"], env, tmp))
                imp = [sys.executable, "-c", "import workers.cli"]
                row["import workers.cli"].append(wall(imp, env, tmp))
                row["conveyor --help"].append(wall([*CLI, "--help"], env, tmp))
                row["conveyor status"].append(wall([*CLI, "status"], db_env, tmp))
    finally:
        drop_database(url)
    for name, code in codes.items():
        folder = tmp / f"dev-{name}"
        folder.mkdir()
        for label in ("first start", "restart"):
            healthy, banner, stop = dev_cycle(code, folder)
            results[name][f"dev {label}: /healthz answers"].append(healthy)
            results[name][f"dev {label}: banner printed"].append(banner)
            results[name][f"dev {label}: Ctrl-C to exit"].append(stop)
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--before", default="main", help="git ref measured as the baseline")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="conveyor-bench-") as name:
        tmp = Path(name)
        (tmp / "before").mkdir()
        before = snapshot(args.before, (tmp / "before").resolve())
        results = measure({"before": before, "after": ROOT}, args.runs, tmp)
    # The minimum is the least load-disturbed figure; the median shows what a user waits.
    print(f"{'seconds (min / median)':38} {'before':>13} {'after':>13} {'after/before':>13}")
    for metric in results["after"]:
        b, a = results["before"][metric], results["after"][metric]
        ratio = f"{min(a) / min(b):.2f} / {statistics.median(a) / statistics.median(b):.2f}"
        print(
            f"{metric:38} {min(b):5.2f} / {statistics.median(b):5.2f} "
            f"{min(a):5.2f} / {statistics.median(a):5.2f} {ratio:>13}"
        )


if __name__ == "__main__":
    main()
