"""Test files made on the fly (Pillow, zipfile, pypdf): no binaries in the repository."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib

from PIL import Image
from pypdf import PdfWriter

ORIENTATION = 0x0112
GPS_IFD = 0x8825


def photo(width: int = 640, height: int = 480, *, orientation: int = 1, gps: bool = True) -> bytes:
    """A JPEG with a gradient, camera EXIF and (by default) a GPS position to strip."""
    image = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    image.putpixel((0, 0), (255, 0, 0))
    exif = Image.Exif()
    exif[0x010F] = "ConveyorCam"  # Make
    exif[0x0110] = "Model 1"  # Model
    exif[ORIENTATION] = orientation
    if gps:
        exif.get_ifd(GPS_IFD).update({1: "N", 2: (52.0, 31.0, 12.0)})
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90, exif=exif)
    return buffer.getvalue()


def png_with_alpha(size: int = 300) -> bytes:
    image = Image.new("RGBA", (size, size), (0, 128, 255, 0))
    for x in range(size // 4, size // 2):
        for y in range(size // 4, size // 2):
            image.putpixel((x, y), (255, 0, 0, 255))
    return _save(image, "PNG")


def cmyk_jpeg(width: int = 400, height: int = 300) -> bytes:
    return _save(Image.new("CMYK", (width, height), (0, 255, 255, 0)), "JPEG")


def animated_gif(frames: int = 3, size: int = 200) -> bytes:
    images = [Image.new("P", (size, size), i * 40) for i in range(frames)]
    buffer = io.BytesIO()
    images[0].save(buffer, "GIF", save_all=True, append_images=images[1:], duration=100)
    return buffer.getvalue()


def bomb_png(width: int = 30_000, height: int = 30_000) -> bytes:
    """A few hundred KB of PNG that would decode to widthxheight pixels (1-bit)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    row = b"\x00" * (1 + (width + 7) // 8)
    compressor = zlib.compressobj(9)
    chunks = [compressor.compress(row * 1000) for _ in range(height // 1000)]
    idat = b"".join(chunks) + compressor.flush()
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")
    )


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def jpeg_claiming(width: int, height: int) -> bytes:
    """A small valid JPEG whose frame header claims widthxheight."""
    data = bytearray(photo(64, 48, gps=False))
    sof = data.find(b"\xff\xc0")
    assert sof > 0
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def truncated_jpeg() -> bytes:
    data = photo(800, 600, gps=False)
    return data[: len(data) // 2]


def pdf(pages: int = 2) -> bytes:
    writer = PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(width=200, height=200)
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def elf_executable() -> bytes:
    return b"\x7fELF\x02\x01\x01\x00" + b"\x00" * 8 + b"\x02\x00\x3e\x00" + b"\x00" * 240


def zip_bomb(uncompressed: int = 20 * 1024 * 1024) -> bytes:
    buffer = io.BytesIO()
    with (
        zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive,
        archive.open("zeros.bin", "w") as entry,
    ):
        block = b"\x00" * (1024 * 1024)
        for _ in range(uncompressed // len(block)):
            entry.write(block)
    return buffer.getvalue()


def plain_zip(payload: bytes, entries: int = 1) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for i in range(entries):
            archive.writestr(f"file-{i}.bin", payload)
    return buffer.getvalue()


def _save(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()
