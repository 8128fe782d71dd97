"""Thumbnail rendering on generated images: orientation, alpha, CMYK, animation, refusals."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from shared.storage.buckets import THUMBNAIL_SIZES
from tests.support import media
from workers.thumbnails.render import render_thumbnails
from workers.uploads.errors import Rejected

PIXELS = 100_000_000


def _open(blob: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(blob))
    assert image.format == "WEBP"
    return image


def test_every_size_fits_its_box() -> None:
    out = render_thumbnails(media.photo(2000, 1500), THUMBNAIL_SIZES, max_pixels=PIXELS)
    assert sorted(out) == [128, 256, 1024]
    assert _open(out[1024]).size == (1024, 768)
    assert _open(out[128]).size == (128, 96)


def test_small_images_are_not_enlarged() -> None:
    out = render_thumbnails(media.photo(200, 100), THUMBNAIL_SIZES, max_pixels=PIXELS)
    assert _open(out[1024]).size == (200, 100)


def test_exif_orientation_is_applied() -> None:
    out = render_thumbnails(media.photo(400, 200, orientation=6), (256,), max_pixels=PIXELS)
    assert _open(out[256]).size == (128, 256)


def test_alpha_is_kept() -> None:
    image = _open(render_thumbnails(media.png_with_alpha(), (128,), max_pixels=PIXELS)[128])
    assert image.mode == "RGBA"
    assert image.getpixel((0, 0))[3] == 0  # type: ignore[index]


def test_cmyk_becomes_rgb() -> None:
    image = _open(render_thumbnails(media.cmyk_jpeg(), (128,), max_pixels=PIXELS)[128])
    assert image.mode == "RGB"
    red, green, blue = image.getpixel((10, 10))  # type: ignore[misc]
    assert red > 200 and green < 60 and blue < 60


def test_first_frame_of_an_animation() -> None:
    image = _open(render_thumbnails(media.animated_gif(), (128,), max_pixels=PIXELS)[128])
    assert getattr(image, "n_frames", 1) == 1


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (media.truncated_jpeg(), "corrupt"),
        (media.jpeg_claiming(60_000, 60_000), "bomb"),
        (media.bomb_png(), "bomb"),
    ],
)
def test_refusals(data: bytes, code: str) -> None:
    with pytest.raises(Rejected) as caught:
        render_thumbnails(data, THUMBNAIL_SIZES, max_pixels=PIXELS)
    assert caught.value.code == code
