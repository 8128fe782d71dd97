"""In-process thumbnail floors for bench/thumbnails.py, run as a child so its peak RSS is its own.

    python -m bench._thumb_floor pillow|render OUT_DIR FILE...

`pillow`: plain Pillow (open, draft, 1024 → 256 → 128 thumbnails, WebP q80).
`render`: the project's own `render_thumbnails` on the same bytes (no S3, no database).
Prints {"seconds": ...} for the loop alone (interpreter start-up excluded).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from PIL import Image

SIZES = (1024, 256, 128)


def plain_pillow(path: Path, out: Path) -> None:
    with Image.open(path) as image:
        image.draft("RGB", (SIZES[0], SIZES[0]))
        current = image.convert("RGB")
    for size in SIZES:
        current.thumbnail((size, size), Image.Resampling.LANCZOS)
        current.save(out / f"{path.stem}_{size}.webp", "WEBP", quality=80, method=4)


def project_render(path: Path, out: Path) -> None:
    from shared.storage.buckets import THUMBNAIL_SIZES
    from workers.thumbnails.render import render_thumbnails

    rendered = render_thumbnails(path.read_bytes(), THUMBNAIL_SIZES, max_pixels=100_000_000)
    for size, blob in rendered.items():
        (out / f"{path.stem}_{size}.webp").write_bytes(blob)


def main(argv: list[str]) -> int:
    mode, out, files = argv[0], Path(argv[1]), [Path(p) for p in argv[2:]]
    work = {"pillow": plain_pillow, "render": project_render}[mode]
    if mode == "render":
        project_render(files[0], out)  # import the project's modules outside the timed loop
    started = time.perf_counter()
    for path in files:
        work(path, out)
    print(json.dumps({"seconds": time.perf_counter() - started}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
