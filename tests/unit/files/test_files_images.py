"""Image measurement, thumbnails and decompression-bomb refusal."""

from __future__ import annotations

import io
import os
import struct
import zlib

import pytest
from PIL import Image

from omnify.files.images import (
    DEFAULT_MAX_PIXELS,
    THUMBNAIL_SIZE,
    ImageTooLarge,
    InvalidImage,
    aprocess_image,
    inspect_image,
    process_image,
)


def encode(image: Image.Image, fmt: str, **kw: object) -> io.BytesIO:
    buf = io.BytesIO()
    image.save(buf, fmt, **kw)
    buf.seek(0)
    return buf


def png_declaring(width: int, height: int) -> io.BytesIO:
    """A tiny valid-looking PNG whose header claims ``width`` x ``height`` pixels (a bomb)."""
    data = bytearray(encode(Image.new("L", (1, 1)), "PNG").getvalue())
    struct.pack_into(">II", data, 16, width, height)  # IHDR payload starts at byte 16
    struct.pack_into(">I", data, 29, zlib.crc32(bytes(data[12:29])))
    return io.BytesIO(bytes(data))


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def test_png_dimensions_and_webp_thumbnail() -> None:
    src = encode(Image.new("RGB", (640, 480), (10, 120, 200)), "PNG")
    assert inspect_image(src).width == 640
    assert not src.closed and src.tell() == 0  # the caller's file stays usable
    result = process_image(src)
    assert (result.info.format, result.info.width, result.info.height) == ("png", 640, 480)
    thumb = result.thumbnail
    assert (thumb.width, thumb.height) == (THUMBNAIL_SIZE, 192)
    assert thumb.content_type == "image/webp"
    image = decode(thumb.data)
    assert image.format == "WEBP" and image.size == (256, 192)
    r, g, b = image.convert("RGB").getpixel((128, 96))  # type: ignore[misc]
    assert abs(r - 10) < 12 and abs(g - 120) < 12 and abs(b - 200) < 12


def test_small_images_are_not_upscaled_and_alpha_is_kept() -> None:
    src = encode(Image.new("RGBA", (40, 20), (255, 0, 0, 0)), "PNG")
    result = process_image(src)
    assert (result.thumbnail.width, result.thumbnail.height) == (40, 20)
    assert decode(result.thumbnail.data).mode == "RGBA"


def test_exif_orientation_is_applied() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    src = encode(Image.new("RGB", (400, 200), "white"), "JPEG", exif=exif.tobytes())
    result = process_image(src)
    assert (result.info.width, result.info.height) == (200, 400)
    assert (result.thumbnail.width, result.thumbnail.height) == (128, 256)
    assert decode(result.thumbnail.data).size == (128, 256)


def test_animated_gif_uses_first_frame() -> None:
    frames = [Image.new("RGB", (64, 64), colour) for colour in ("red", "blue", "green")]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    buf.seek(0)
    result = process_image(buf)
    assert result.info.format == "gif"
    r, g, b = decode(result.thumbnail.data).convert("RGB").getpixel((32, 32))  # type: ignore[misc]
    assert r > 200 and g < 40 and b < 40


# Pillow's own guard warns between 1x and 2x the cap and raises above 2x; both paths are covered.
@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize(("width", "height"), [(100_000, 100_000), (20_000, 20_000), (7000, 6000)])
def test_decompression_bombs_are_refused_before_decoding(width: int, height: int) -> None:
    assert width * height > DEFAULT_MAX_PIXELS
    with pytest.raises(ImageTooLarge) as err:
        process_image(png_declaring(width, height))
    assert err.value.status == 422 and err.value.code == "image-too-large"
    with pytest.raises(ImageTooLarge):
        inspect_image(png_declaring(width, height))


def test_explicit_pixel_cap_applies_to_real_images() -> None:
    src = encode(Image.new("L", (2000, 1000)), "PNG")
    with pytest.raises(ImageTooLarge):
        process_image(src, max_pixels=1_000_000)
    assert process_image(src, max_pixels=2_000_000).info.width == 2000


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not an image at all",
        b'<svg xmlns="http://www.w3.org/2000/svg"/>',
        encode(Image.new("RGB", (10, 10)), "BMP").getvalue(),  # a format the sniffer never allows
        encode(Image.frombytes("RGB", (300, 300), os.urandom(270_000)), "PNG").getvalue()[:20_000],
    ],
)
def test_invalid_or_truncated_images_are_refused(data: bytes) -> None:
    with pytest.raises(InvalidImage) as err:
        process_image(io.BytesIO(data))
    assert err.value.status == 422


async def test_async_variant() -> None:
    result = await aprocess_image(encode(Image.new("RGB", (300, 100)), "WEBP"), size=64)
    assert (result.info.format, result.thumbnail.width, result.thumbnail.height) == ("webp", 64, 21)
