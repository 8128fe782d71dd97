"""ICC handling in the thumbnail renderer: embedded profiles are honoured, broken ones ignored."""

from __future__ import annotations

import io

from PIL import Image, ImageCms

from workers.thumbnails.render import render_thumbnails, to_srgb


def jpeg_with_profile(profile: bytes) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (1600, 1200), (200, 30, 60)).save(
        buffer, "JPEG", quality=95, icc_profile=profile
    )
    return buffer.getvalue()


def srgb_profile() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def test_embedded_profile_is_converted_to_srgb_and_colours_survive() -> None:
    image = Image.open(io.BytesIO(jpeg_with_profile(srgb_profile())))
    assert image.info.get("icc_profile")
    converted = to_srgb(image)
    assert converted.mode == "RGB"
    r, g, b = converted.getpixel((10, 10))  # type: ignore[misc]
    assert abs(r - 200) <= 4 and abs(g - 30) <= 4 and abs(b - 60) <= 4


def test_broken_profile_falls_back_to_plain_conversion() -> None:
    thumbs = render_thumbnails(
        jpeg_with_profile(b"not an icc profile" * 10), (256, 128), max_pixels=100_000_000
    )
    assert set(thumbs) == {256, 128}
    small = Image.open(io.BytesIO(thumbs[128]))
    assert (small.format, small.size) == ("WEBP", (128, 96))
