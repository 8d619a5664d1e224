"""Measure uploaded raster images and make their thumbnails, refusing decompression bombs.

A 50 KB PNG can declare 100 000 x 100 000 pixels and expand to tens of gigabytes when
decoded. The declared size is in the header, which Pillow reads lazily, so the pixel
count is checked *before* any decoding: an explicit cap here (a typed 4xx error for
the API) backed by Pillow's own ``MAX_IMAGE_PIXELS`` guard, lowered to the same cap.

Only the formats the sniffer allows are opened (``formats=``), so a file that slipped
through as "png" cannot reach one of Pillow's rarer, less-audited decoders.
Everything here is blocking CPU work: call the ``a*`` variants from async code.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, BinaryIO, cast

import anyio.to_thread
from PIL import Image, UnidentifiedImageError

from omnify.core.errors import UnprocessableEntity

#: 40 megapixels: above any real logo or creative (8K x 5K), far below a bomb.
DEFAULT_MAX_PIXELS = 40_000_000
THUMBNAIL_SIZE = 256
PIL_FORMATS = ("PNG", "JPEG", "WEBP", "GIF")

# Pillow's guard is process-wide; lower it to our cap so any code path that opens an
# image without going through this module is protected too (it errors at twice the value).
if Image.MAX_IMAGE_PIXELS is None or Image.MAX_IMAGE_PIXELS > DEFAULT_MAX_PIXELS:
    Image.MAX_IMAGE_PIXELS = DEFAULT_MAX_PIXELS

_ORIENTATION_TAG = 0x0112
_SWAPS_AXES = {5, 6, 7, 8}
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


class ImageTooLarge(UnprocessableEntity):
    code, title = "image-too-large", "Image dimensions too large"


class InvalidImage(UnprocessableEntity):
    code, title = "invalid-image", "Invalid image"


@dataclass(frozen=True, slots=True)
class ImageInfo:
    format: str  # png, jpeg, webp, gif
    width: int  # as displayed, i.e. after EXIF orientation
    height: int


@dataclass(frozen=True, slots=True)
class Thumbnail:
    data: bytes
    width: int
    height: int
    content_type: str = "image/webp"
    extension: str = "webp"


@dataclass(frozen=True, slots=True)
class ProcessedImage:
    info: ImageInfo
    thumbnail: Thumbnail


class _Borrowed(io.RawIOBase):
    """The caller's file, lent to Pillow: ``Image.close()`` closes the file it was given,
    but an upload's spooled file must stay open to be streamed to storage afterwards."""

    def __init__(self, fp: BinaryIO) -> None:
        super().__init__()
        self._fp = fp

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        return self._fp.read(size)

    def readinto(self, buffer: Any) -> int:
        data = self._fp.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._fp.seek(offset, whence)

    def tell(self) -> int:
        return self._fp.tell()


@contextmanager
def _open(fp: BinaryIO, max_pixels: int) -> Iterator[Image.Image]:
    """Open lazily (header only), enforce the pixel cap, and rewind ``fp`` afterwards."""
    try:
        image = Image.open(cast(BinaryIO, _Borrowed(fp)), formats=PIL_FORMATS)
    except Image.DecompressionBombError:
        raise ImageTooLarge(f"The image has more than {max_pixels} pixels.", max_pixels=max_pixels) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise InvalidImage("The file is not a readable PNG, JPEG, WebP or GIF image.") from None
    try:
        width, height = image.size
        if width <= 0 or height <= 0:
            raise InvalidImage("The image has no pixels.")
        if width * height > max_pixels:
            raise ImageTooLarge(
                f"The image is {width}x{height} pixels; the limit is {max_pixels} pixels.",
                max_pixels=max_pixels,
            )
        yield image
    finally:
        image.close()
        fp.seek(0)


def _orientation(image: Image.Image) -> int:
    try:
        value = image.getexif().get(_ORIENTATION_TAG, 1)
    except Exception:  # a corrupt EXIF block must not sink an otherwise fine image
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _info(image: Image.Image, orientation: int) -> ImageInfo:
    width, height = image.size
    if orientation in _SWAPS_AXES:
        width, height = height, width
    return ImageInfo(format=(image.format or "").lower(), width=width, height=height)


def inspect_image(fp: BinaryIO, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageInfo:
    """Format and displayed dimensions from the header only (no pixel decoding)."""
    with _open(fp, max_pixels) as image:
        return _info(image, _orientation(image))


def process_image(
    fp: BinaryIO, *, max_pixels: int = DEFAULT_MAX_PIXELS, size: int = THUMBNAIL_SIZE
) -> ProcessedImage:
    """Dimensions plus a WebP thumbnail at most ``size`` px on its longer side.

    Decoding for the thumbnail doubles as the integrity check: a truncated or corrupt
    image fails here with :class:`InvalidImage` instead of being stored as "an image".
    """
    with _open(fp, max_pixels) as image:
        orientation = _orientation(image)
        info = _info(image, orientation)
        try:
            image.seek(0)  # first frame of an animation is the poster
            frame = image.convert("RGBA" if image.has_transparency_data else "RGB")
            frame.thumbnail((size, size), Image.Resampling.LANCZOS, reducing_gap=3.0)
            # Rotate the small thumbnail, not the full image (same table as ImageOps.exif_transpose).
            if (method := _TRANSPOSE.get(orientation)) is not None:
                frame = frame.transpose(method)
            out = io.BytesIO()
            frame.save(out, "WEBP", quality=80, method=4)
        except Image.DecompressionBombError:
            raise ImageTooLarge(f"The image has more than {max_pixels} pixels.",
                                max_pixels=max_pixels) from None
        except (OSError, SyntaxError, ValueError, EOFError):
            raise InvalidImage("The image data is truncated or corrupt.") from None
        return ProcessedImage(info, Thumbnail(out.getvalue(), frame.width, frame.height))


async def ainspect_image(fp: BinaryIO, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageInfo:
    return await anyio.to_thread.run_sync(lambda: inspect_image(fp, max_pixels=max_pixels))


async def aprocess_image(
    fp: BinaryIO, *, max_pixels: int = DEFAULT_MAX_PIXELS, size: int = THUMBNAIL_SIZE
) -> ProcessedImage:
    return await anyio.to_thread.run_sync(lambda: process_image(fp, max_pixels=max_pixels, size=size))
