"""Thumbnails from one decode: orientation applied, sRGB, alpha kept, WebP out. Pure."""

from __future__ import annotations

import io

from PIL import Image, ImageCms, ImageOps

from workers.thumbnails.decoding import decode_slot
from workers.uploads.errors import Reason, Rejected
from workers.uploads.metadata import open_image_header

WEBP_QUALITY = 80


def render_thumbnails(data: bytes, sizes: tuple[int, ...], *, max_pixels: int) -> dict[int, bytes]:
    """WebP thumbnails fitting each `sizes` box (largest first), from a single decode.

    One decode per process at a time (workers/thumbnails/decoding.py): the decoded pixels
    are freed before the slot is given back."""
    out: dict[int, bytes] = {}
    with decode_slot():
        # In place, largest first: the full-size pixels are dropped by the first resize, and
        # no full-size copy is ever made (peak ~ 2x one decoded image, bench/image_decode.py).
        image = _decode(data, largest=max(sizes), max_pixels=max_pixels)
        for size in sorted(sizes, reverse=True):
            image.thumbnail((size, size), Image.Resampling.LANCZOS)
            out[size] = encode_webp(image)
        del image
    return out


def _decode(data: bytes, *, largest: int, max_pixels: int) -> Image.Image:
    image = open_image_header(data, max_pixels=max_pixels)  # pixel limit before decoding
    try:
        if image.format == "JPEG":
            image.draft(None, (largest, largest))  # decode at 1/2, 1/4, 1/8 scale when possible
        image.seek(0)  # animations: the first frame
        image.load()
        ImageOps.exif_transpose(image, in_place=True)  # no full-size copy
        return to_srgb(image)
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise Rejected(Reason.CORRUPT, f"undecodable image: {exc}") from None


def has_alpha(image: Image.Image) -> bool:
    return image.mode in {"RGBA", "LA", "PA", "La", "RGBa"} or (
        image.mode == "P" and "transparency" in image.info
    )


def to_srgb(image: Image.Image) -> Image.Image:
    """RGB or RGBA in sRGB, converting through the embedded ICC profile when there is one."""
    target = "RGBA" if has_alpha(image) else "RGB"
    icc = image.info.get("icc_profile")
    if icc and image.mode in {"RGB", "RGBA", "CMYK"}:
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            srgb = ImageCms.createProfile("sRGB")
            converted = ImageCms.profileToProfile(image, source, srgb, outputMode=target)
            if converted is not None:
                return converted
        except (ImageCms.PyCMSError, OSError):
            pass  # a broken profile: fall back to a plain conversion
    return image if image.mode == target else image.convert(target)


def encode_webp(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "WEBP", quality=WEBP_QUALITY, method=4)
    return buffer.getvalue()
