"""Peak memory of thumbnail rendering: the issue's 9000x9000 PNG and a 40 MP PNG, each
rendered by T threads at once in a fresh child process (what T media-worker threads do).

Before (the old defaults): pixel limit 100 MP, no decode semaphore (T decodes at once).
After (now): pixel limit 40 MP, one decode per process at a time.

Peak RSS is the child's `ru_maxrss` (VmHWM), the baseline its RSS after imports and after
the image bytes are in memory, so the difference is what decoding costs. Prints figures;
asserts nothing.

    .venv/bin/python -m bench.image_decode --threads 4
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys

CHILD = r"""
import io, json, resource, sys, threading
from PIL import Image, ImageDraw
from tests.support import media
from workers.thumbnails import decoding
from workers.thumbnails.render import render_thumbnails
from workers.uploads.errors import Rejected

case, threads, max_pixels, slots = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
if case == "issue-9000x9000":
    data = media.bomb_png(9000, 9000)
else:  # 8000x5000 RGB PNG (40 MP) with some structure, so it is not a trivial stream
    image = Image.new("RGB", (8000, 5000), (40, 90, 160))
    draw = ImageDraw.Draw(image)
    for i in range(0, 8000, 97):
        draw.line([(i, 0), (8000 - i, 5000)], fill=(i % 255, 255 - i % 255, 80), width=9)
    buffer = io.BytesIO()
    image.save(buffer, "PNG", compress_level=1)
    data = buffer.getvalue()
    del image, draw, buffer
decoding.set_decode_concurrency(slots)
before = int(open("/proc/self/statm").read().split()[1]) * 4096 // 1024
outcomes = []

def run():
    try:
        render_thumbnails(data, (1024, 256, 128), max_pixels=max_pixels)
        outcomes.append("ok")
    except Rejected as exc:
        outcomes.append(exc.code)

workers = [threading.Thread(target=run) for _ in range(threads)]
for w in workers: w.start()
for w in workers: w.join()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"bytes": len(data), "before_kb": before, "peak_kb": peak,
                  "outcomes": sorted(set(outcomes))}))
"""


def measure(case: str, threads: int, max_pixels: int, slots: int) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, case, str(threads), str(max_pixels), str(slots)],
        capture_output=True,
        text=True,
        check=True,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()
    t = args.threads
    rows = []
    for case in ("issue-9000x9000", "40MP-8000x5000"):
        for label, max_pixels, slots in (("before", 100_000_000, t), ("after", 40_000_000, 1)):
            got = measure(case, t, max_pixels, slots)
            rows.append((case, label, got))
    out = io.StringIO()
    out.write(f"threads per process: {t}\n")
    out.write("| image | settings | file | RSS before | peak RSS | decode cost | outcome |\n")
    out.write("|---|---|---|---|---|---|---|\n")
    for case, label, got in rows:
        before, peak = int(got["before_kb"]) // 1024, int(got["peak_kb"]) // 1024  # type: ignore[call-overload]
        settings = "100 MP, no semaphore" if label == "before" else "40 MP, 1 decode at a time"
        out.write(
            f"| {case} | {label}: {settings} | {int(got['bytes']) // 1024} KB "  # type: ignore[call-overload]
            f"| {before} MB | {peak} MB | {peak - before} MB | {','.join(got['outcomes'])} |\n"  # type: ignore[arg-type]
        )
    print(out.getvalue(), end="")


if __name__ == "__main__":
    main()
