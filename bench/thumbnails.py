"""Thumbnails per core: the full `image.thumbnail` job vs vipsthumbnail, ImageMagick and Pillow.

Generates N synthetic 12-megapixel JPEGs (4000x3000, q90: blurred colour fields, soft-edged
shapes, a gradient and sensor-like grain, ~3-4 MB each), then in the same run:

1. Conveyor: a fresh database, vhost and SeaweedFS; each original is put into the incoming
   bucket and filed by the real `upload.process` service code (`process_upload`, in this
   process), which writes the file row and submits `image.thumbnail` in one transaction. The
   scheduler is held back until that is done, then started against ONE `media` worker process
   with ONE thread. Time: first publish of a thumbnail job (outbox `sent_at`) → last
   `finished_at`, both from PostgreSQL. Peak RSS: VmHWM of the Dramatiq worker child process.
2. vipsthumbnail (`-s 1024`, `256`, `128`: three runs over all files, WebP Q=80),
   VIPS_CONCURRENCY=1.
3. ImageMagick 6 `mogrify -thumbnail` (three runs, WebP q80, `-define jpeg:size=SxS` so libjpeg
   scales on load like Pillow's draft), MAGICK_THREAD_LIMIT=1.
4. Plain Pillow (open, draft, 1024 → 256 → 128, WebP q80) and the project's own
   `render_thumbnails`, each in a child process.

Baselines run under `/usr/bin/time -v` for peak RSS (the largest of their runs). Prints
figures; asserts nothing. Target (issue): full job ≥ 1.2x vipsthumbnail per core, peak RSS
per worker < 150 MB. Needs apt packages libvips-tools, imagemagick and time.

    python -m bench.thumbnails --images 24
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path

import psutil
from PIL import Image, ImageChops, ImageDraw, ImageFilter
from sqlalchemy import text

from shared.db.engine import session_scope
from shared.db.models import Upload
from shared.db.repos import files as files_repo
from shared.embedded import EmbeddedS3, start_seaweedfs
from shared.messaging.names import queue_name
from shared.storage.buckets import Bucket, bucket_name, incoming_key
from tests.support.services import wait_for
from tests.support.stack import Stack
from workers.uploads.policy import UploadPolicy
from workers.uploads.service import process_upload

WIDTH, HEIGHT = 4000, 3000
SIZES = (1024, 256, 128)
VIPS = "/usr/bin/vipsthumbnail"
MOGRIFY = "/usr/bin/mogrify"  # the ImageMagick binary itself, not a wrapper earlier on PATH
GNU_TIME = "/usr/bin/time"
TIMEOUT_S = 240


@dataclass(frozen=True)
class Result:
    system: str
    images: int
    seconds: float
    peak_rss_mb: float | None

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds


# --- test images -------------------------------------------------------------------------


class PhotoMaker:
    """Photo-like 4000x3000 RGB: smooth colour fields, shapes, a gradient, per-channel grain."""

    def __init__(self) -> None:
        # Full-resolution grain is the slow part; make it once and shift it per image.
        self.grain = [Image.effect_noise((WIDTH, HEIGHT), 10) for _ in range(3)]

    @staticmethod
    def _field(cells: tuple[int, int], sigma: float) -> Image.Image:
        return Image.effect_noise(cells, sigma).resize((WIDTH, HEIGHT), Image.Resampling.BICUBIC)

    def make(self, seed: int) -> bytes:
        rnd = random.Random(seed)
        gradient = Image.linear_gradient("L").rotate(rnd.uniform(0, 360)).resize((WIDTH, HEIGHT))
        base = Image.blend(
            Image.blend(self._field((40, 30), 70), gradient, 0.4), self._field((400, 300), 35), 0.3
        )
        shapes = Image.new("L", (WIDTH, HEIGHT), 128)
        draw = ImageDraw.Draw(shapes)
        for _ in range(60):
            x, y, r = rnd.randrange(WIDTH), rnd.randrange(HEIGHT), rnd.randrange(40, 600)
            draw.ellipse((x - r, y - r, x + r, y + r), fill=rnd.randrange(256))
        shaped = Image.blend(base, shapes.filter(ImageFilter.GaussianBlur(3)), 0.45)
        channels = []
        for grain in self.grain:
            tinted = Image.blend(shaped, self._field((20, 15), 60), 0.25)
            shifted = ImageChops.offset(grain, rnd.randrange(WIDTH), rnd.randrange(HEIGHT))
            channels.append(ImageChops.add(tinted, shifted, scale=1.0, offset=-128))
        exif = Image.Exif()
        exif[0x010F], exif[0x0110] = "BenchCam", "12MP"  # Make, Model
        buffer = io.BytesIO()
        Image.merge("RGB", channels).save(buffer, "JPEG", quality=90, exif=exif)
        return buffer.getvalue()


def make_photos(count: int, directory: Path) -> list[Path]:
    directory.mkdir(parents=True)
    maker = PhotoMaker()
    paths = []
    for i in range(count):
        path = directory / f"photo-{i:03d}.jpg"
        path.write_bytes(maker.make(i))
        paths.append(path)
    return paths


# --- Conveyor ----------------------------------------------------------------------------


def file_originals(stack: Stack, paths: list[Path]) -> None:
    """What `upload.process` does for each upload, here in-process: row, S3, job submission."""
    policy = UploadPolicy(bucket_prefix=stack.bucket_prefix)
    store = stack.store
    incoming = bucket_name(stack.bucket_prefix, Bucket.INCOMING)
    for path in paths:
        data, upload_id = path.read_bytes(), uuid.uuid4()
        with session_scope(stack.sessions) as session:
            files_repo.add_upload(
                session,
                Upload(
                    id=upload_id,
                    user_id="bench-user",
                    filename=path.name,
                    declared_type="image/jpeg",
                    declared_size=len(data),
                    incoming_key=incoming_key(upload_id),
                ),
            )
        store.put_bytes(incoming, incoming_key(upload_id), data, content_type="image/jpeg")
        with session_scope(stack.sessions) as session:
            process_upload(
                session,
                store,
                policy,
                upload_id=upload_id,
                user_id="bench-user",
                now=datetime.now(UTC),
            )


def vm_hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for {pid}")


def worker_children(worker: subprocess.Popen[bytes]) -> list[int]:
    """Dramatiq's worker processes (children of `conveyor worker`), not its supervisor."""
    return [c.pid for c in psutil.Process(worker.pid).children(recursive=True)]


def wait_for_consumer(stack: Stack, queue: str, timeout: float = 60) -> None:
    channel = stack.amqp_channel()
    try:
        wait_for(
            lambda: channel.queue_declare(queue, passive=True).method.consumer_count >= 1,
            timeout=timeout,
            interval=0.2,
            what=f"a consumer on {queue}",
        )
    finally:
        channel.connection.close()


def job_counts(stack: Stack) -> dict[str, int]:
    with stack.engine.connect() as conn:
        rows = conn.execute(
            text("SELECT state, count(*) FROM jobs WHERE kind = 'image.thumbnail' GROUP BY state")
        ).all()
    return {str(state): int(count) for state, count in rows}


def job_timings(stack: Stack) -> dict[str, float]:
    query = """
        SELECT extract(epoch FROM (SELECT min(sent_at) FROM outbox)),
               extract(epoch FROM max(finished_at))
        FROM jobs WHERE kind = 'image.thumbnail' AND state = 'succeeded'
    """
    with stack.engine.connect() as conn:
        first_sent, last_finished_at = conn.execute(text(query)).one()
    return {"first_sent": float(first_sent), "last_finished_at": float(last_finished_at)}


def finished_log_times(logs: Path) -> list[float]:
    """Epoch seconds of the worker's `jobs.finished` lines (logged after the commit)."""
    times = []
    for log in logs.glob("worker-*.log"):
        for line in log.read_text(errors="replace").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and entry.get("event") == "jobs.finished":
                times.append(datetime.fromisoformat(entry["timestamp"]).timestamp())
    return sorted(times)


def run_conveyor(paths: list[Path], work: Path) -> tuple[Result, dict[str, float]]:
    s3: EmbeddedS3 | None = None
    stack: Stack | None = None
    logs = work / "logs"
    logs.mkdir()
    try:
        s3 = start_seaweedfs(work / "seaweedfs")
        stack = Stack.create(logs, s3=s3)
        started = time.perf_counter()
        file_originals(stack, paths)  # jobs wait in the outbox: no scheduler yet
        ingest_s = time.perf_counter() - started
        worker = stack.start_worker(
            "media", processes=1, threads=1, CONVEYOR_HEARTBEAT_INTERVAL_S="10"
        )
        wait_for_consumer(stack, queue_name("media"))
        children = worker_children(worker)
        idle_rss = max(vm_hwm_mb(pid) for pid in children)
        spawned = time.time()
        stack.start_scheduler()
        deadline = time.monotonic() + TIMEOUT_S
        while (counts := job_counts(stack)).get("succeeded", 0) < len(paths):
            if set(counts) - {"queued", "running", "succeeded"} or time.monotonic() > deadline:
                raise RuntimeError(f"thumbnail jobs {counts}; logs in {logs}")
            time.sleep(0.05)
        observed = time.time()
        peak_rss = max(vm_hwm_mb(pid) for pid in worker_children(worker))
        timings = job_timings(stack)
        finished = finished_log_times(logs)
        end = finished[-1] if len(finished) == len(paths) else observed
        seconds = end - timings["first_sent"]
        gaps = [b - a for a, b in pairwise(finished)]
        extra = {
            "ingest_s": ingest_s,
            "scheduler_to_first_publish_s": timings["first_sent"] - spawned,
            "db_finished_at_s": timings["last_finished_at"] - timings["first_sent"],
            "observed_s": observed - timings["first_sent"],
            "end_from_log": float(end != observed),
            "median_gap_s": statistics.median(gaps) if gaps else float("nan"),
            "idle_rss_mb": idle_rss,
            "worker_children": float(len(children)),
        }
        return Result("conveyor job (1 proc x 1 thr)", len(paths), seconds, peak_rss), extra
    except BaseException:
        for log in sorted(logs.glob("*.log")):
            tail = log.read_text(errors="replace").splitlines()[-15:]
            print(f"--- {log.name}\n" + "\n".join(tail), file=sys.stderr)
        raise
    finally:
        if stack is not None:
            stack.close()
        if s3 is not None:
            s3.stop()


# --- baselines ---------------------------------------------------------------------------


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Wall seconds, peak RSS (MB, from GNU time) and stdout of one command."""
    started = time.perf_counter()
    done = subprocess.run(
        [GNU_TIME, "-v", *argv], env=env, capture_output=True, text=True, timeout=TIMEOUT_S
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({done.returncode}): {done.stderr[-2000:]}")
    found = re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)
    assert found, done.stderr[-2000:]
    return seconds, int(found.group(1)) / 1024, done.stdout


def one_thread_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", **extra)
    return env


def run_vips(paths: list[Path], out: Path) -> Result:
    total, peak = 0.0, 0.0
    env = one_thread_env(VIPS_CONCURRENCY="1")
    for size in SIZES:
        target = out / f"vips-{size}"
        target.mkdir(parents=True)
        argv = [VIPS, "-s", str(size), "-o", f"{target}/%s.webp[Q=80]", *map(str, paths)]
        seconds, rss, _ = timed(argv, env)
        total, peak = total + seconds, max(peak, rss)
    return Result("vipsthumbnail (1 thread)", len(paths), total, peak)


def run_magick(paths: list[Path], out: Path) -> Result:
    total, peak = 0.0, 0.0
    env = one_thread_env(MAGICK_THREAD_LIMIT="1")
    for size in SIZES:
        target = out / f"magick-{size}"
        target.mkdir(parents=True)
        box = f"{size}x{size}"
        argv = [MOGRIFY, "-path", str(target), "-format", "webp", "-define", f"jpeg:size={box}"]
        argv += ["-thumbnail", box, "-quality", "80", *map(str, paths)]
        seconds, rss, _ = timed(argv, env)
        total, peak = total + seconds, max(peak, rss)
    return Result("ImageMagick 6 mogrify (1 thr)", len(paths), total, peak)


def run_floor(mode: str, label: str, paths: list[Path], out: Path) -> Result:
    target = out / mode
    target.mkdir(parents=True)
    argv = [sys.executable, "-m", "bench._thumb_floor", mode, str(target), *map(str, paths)]
    _, rss, stdout = timed(argv, one_thread_env())
    return Result(label, len(paths), float(json.loads(stdout)["seconds"]), rss)


def check_tools() -> None:
    for tool, package in ((VIPS, "libvips-tools"), (MOGRIFY, "imagemagick"), (GNU_TIME, "time")):
        if not Path(tool).exists():
            raise SystemExit(f"{tool} is missing: apt-get install -y {package}")


# --- report ------------------------------------------------------------------------------


def print_table(rows: list[Result], conveyor: Result | None) -> None:
    print(
        f"\n{'system':<32} {'images':>6} {'seconds':>8} {'images/s':>9} {'conv ÷ it':>10} "
        f"{'peak RSS MB':>12}"
    )
    for r in rows:
        ratio = f"{conveyor.images_per_s / r.images_per_s:>10.2f}" if conveyor else f"{'-':>10}"
        rss = f"{r.peak_rss_mb:>12.0f}" if r.peak_rss_mb is not None else f"{'-':>12}"
        print(
            f"{r.system:<32} {r.images:>6} {r.seconds:>8.2f} {r.images_per_s:>9.2f} {ratio} {rss}"
        )


def print_conveyor_notes(conveyor: Result, extra: dict[str, float]) -> None:
    end = "the worker's last `jobs.finished` log line" if extra["end_from_log"] else "observed"
    print(
        f"\nconveyor seconds = first publish (outbox sent_at) → {end} "
        f"(observed by polling: {extra['observed_s']:.2f}s; from jobs.finished_at: "
        f"{extra['db_finished_at_s']:.2f}s, which is now() at the start of the handler's "
        f"transaction, so it ends before the last job's work does).\n"
        f"not counted: ingest via process_upload {extra['ingest_s']:.1f}s; scheduler start → "
        f"first publish {extra['scheduler_to_first_publish_s']:.2f}s.\n"
        f"median interval between successive jobs.finished: "
        f"{extra['median_gap_s'] * 1000:.0f} ms/image; worker VmHWM idle "
        f"{extra['idle_rss_mb']:.0f} MB → peak {conveyor.peak_rss_mb:.0f} MB "
        f"({extra['worker_children']:.0f} Dramatiq child process)."
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--skip-conveyor", action="store_true")
    args = parser.parse_args(argv)
    check_tools()

    work = Path(tempfile.mkdtemp(prefix="conveyor-thumbs-"))
    try:
        started = time.perf_counter()
        paths = make_photos(args.images, work / "originals")
        mean_mb = sum(p.stat().st_size for p in paths) / len(paths) / 1e6
        print(
            f"generated {len(paths)} JPEGs {WIDTH}x{HEIGHT} q90, mean {mean_mb:.2f} MB, "
            f"in {time.perf_counter() - started:.1f}s",
            flush=True,
        )
        rows: list[Result] = []
        conveyor, extra = None, {}
        if not args.skip_conveyor:
            conveyor, extra = run_conveyor(paths, work)
            rows.append(conveyor)
        out = work / "out"
        rows.append(run_vips(paths, out))
        rows.append(run_magick(paths, out))
        rows.append(run_floor("pillow", "Pillow plain (in-process)", paths, out))
        rows.append(run_floor("render", "render_thumbnails (in-process)", paths, out))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(
        f"\nimages={args.images} sizes={'/'.join(map(str, SIZES))} WebP q80 "
        f"cores={os.cpu_count()}; baselines limited to one thread"
    )
    print_table(rows, conveyor)
    if conveyor is not None:
        print_conveyor_notes(conveyor, extra)
    print(
        "target (issue): full job ≥ 1.2x vipsthumbnail per core (conv ÷ it ≥ 1.2 on the "
        "vipsthumbnail row); peak RSS per worker < 150 MB"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
