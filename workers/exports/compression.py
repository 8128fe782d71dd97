"""Where a writer's bytes go: the file as is, gzip-compressed, or as the one member of a zip."""

from __future__ import annotations

import gzip
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, cast

from shared.jobs.payloads.exports import Compression

SUFFIX = {Compression.NONE: "", Compression.GZIP: ".gz", Compression.ZIP: ".zip"}
CONTENT_TYPE = {Compression.GZIP: "application/gzip", Compression.ZIP: "application/zip"}


@contextmanager
def open_sink(path: Path, compression: Compression, member: str) -> Iterator[BinaryIO]:
    """A writable stream into `path`; compressed data is flushed as it is written."""
    if compression is Compression.GZIP:
        with gzip.open(path, "wb", compresslevel=6) as gz:
            yield cast(BinaryIO, gz)
    elif compression is Compression.ZIP:
        with (
            zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive,
            archive.open(member, "w", force_zip64=True) as entry,
        ):
            yield cast(BinaryIO, entry)
    else:
        with path.open("wb") as plain:
            yield plain
