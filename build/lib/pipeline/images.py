"""Images in and out: load any image as 8-bit RGB, find its distinct colours, and
write PNG results atomically.

The EM kernel (src/em/) sees only an (N, 3) array of colours with weights; this
module is the bridge between files and that array.
"""

from __future__ import annotations

import io
import os
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from pipeline.atomic import atomic_path


class ImageError(ValueError):
    """An input image that cannot be used; the message names the path."""


# Pillow refuses images above twice this many pixels as possible decompression bombs;
# the environment variable MAX_IMAGE_PIXELS raises the limit for a trusted large image.
if os.environ.get("MAX_IMAGE_PIXELS", "").isdigit():
    Image.MAX_IMAGE_PIXELS = int(os.environ["MAX_IMAGE_PIXELS"])


@contextmanager
def _opened(path: Path):
    """Image.open(path), with every way it (or decoding inside the block) can fail
    turned into an ImageError naming the path."""
    name = repr(str(path))
    if not path.exists():
        raise ImageError(f"image {name} does not exist")
    if not path.is_file():
        raise ImageError(f"image {name} is not a file")
    try:
        with Image.open(path) as im:
            yield im
    except UnidentifiedImageError:
        raise ImageError(f"image {name} is not an image file Pillow can read") from None
    except PermissionError:
        raise ImageError(f"image {name} cannot be read (permission denied)") from None
    except Image.DecompressionBombError as exc:
        raise ImageError(
            f"image {name} is refused as a possible decompression bomb: {exc}\n"
            f"Downscale it, or if you trust it allow it with MAX_IMAGE_PIXELS=<pixels> "
            f"(e.g. MAX_IMAGE_PIXELS={2 * _pixels(path)} make ...)") from None
    except (OSError, SyntaxError, ValueError) as exc:  # truncated or corrupt data
        raise ImageError(f"image {name} could not be decoded: {exc}") from None


def _pixels(path: Path) -> int:
    """Width x height from the header, without Pillow's size limit."""
    limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
    try:
        with Image.open(path) as im:
            return im.width * im.height
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def check_readable(path: str | os.PathLike) -> Path:
    """`path` if it is a file whose header Pillow reads and whose size it accepts
    (the pixels are not decoded); else ImageError naming the path."""
    path = Path(path)
    with _opened(path) as im:
        if im.width == 0 or im.height == 0:
            raise ImageError(f"image {str(path)!r} is empty ({im.width} x {im.height} pixels)")
    return path


def load_rgb(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as an (H, W, 3) uint8 RGB array.

    Whatever the file holds: the EXIF orientation is applied (the array is what a
    viewer shows); greyscale and palette images are expanded to RGB; 16-bit and
    32-bit integer data are scaled to 8 bits; CMYK is converted by Pillow's formula
    (no colour profile); an alpha channel is composited over a white background, as
    the image looks on a white page. Raises ImageError naming the path when the
    file is missing, is not a readable image, or has no pixels.
    """
    path = check_readable(path)
    with _opened(path) as im:
        im.load()
        ImageOps.exif_transpose(im, in_place=True)
        return _to_rgb8(im)


def _to_rgb8(im: Image.Image) -> np.ndarray:
    """Any Pillow image -> (H, W, 3) uint8 RGB."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16-bit (or 32-bit integer) greyscale: scale the data's full range to 8 bits.
        a = np.asarray(im, dtype=np.float64)
        top = 65535.0 if a.max(initial=0) <= 65535 else float(a.max())
        grey = np.rint(np.clip(a, 0, None) * (255.0 / top)).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if im.mode == "F":
        a = np.asarray(im, dtype=np.float64)
        scale = 255.0 if a.max(initial=0) <= 1.0 else 1.0  # [0, 1] floats or 0..255
        grey = np.rint(np.clip(a * scale, 0, 255)).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    has_alpha = im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        im.mode == "P" and "transparency" in im.info)
    if has_alpha:
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"))
    return np.asarray(im if im.mode == "RGB" else im.convert("RGB"))


def distinct_colours(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The distinct colours of an image with their pixel counts.

    rgb: (H, W, 3) uint8  ->  colours (M, 3) uint8, counts (M,) int64, and
    inverse (H*W,) int32 with colours[inverse] == the pixels in row-major order.
    Colours are packed into 24-bit codes and counted with one bincount over the
    2^24 possible colours: linear time, no sort.
    """
    pixels = rgb.reshape(-1, 3)
    codes = pixels[:, 0].astype(np.uint32)  # built in place: one (H*W,) array, not four
    for channel in (1, 2):
        codes <<= 8
        codes |= pixels[:, channel]
    counts_all = np.bincount(codes, minlength=1 << 24)
    present = np.flatnonzero(counts_all)
    lookup = np.empty(1 << 24, dtype=np.int32)
    lookup[present] = np.arange(len(present), dtype=np.int32)
    inverse = lookup[codes]
    colours = np.stack([(present >> 16) & 255, (present >> 8) & 255, present & 255], axis=1)
    return colours.astype(np.uint8), counts_all[present], inverse


def for_display(rgb: np.ndarray, max_side: int = 1200) -> np.ndarray:
    """Every n-th pixel of an (H, W, ...) image, so that its longer side is at most about
    `max_side`: a view, for showing a large photograph without matplotlib resampling
    (and copying to float) all of its pixels."""
    step = -(-max(rgb.shape[:2]) // max_side)
    return rgb[::step, ::step]


def save_png(path: str | os.PathLike, picture: np.ndarray) -> None:
    """(H, W, 3) uint8 -> an RGB PNG, (H, W) uint8 -> a greyscale one, written
    atomically. Zlib's default level, not
    Pillow's optimize: on a 24-megapixel image that is 5 x faster for 2 % more bytes
    (the compressed size the study measures is the indexed PNG's)."""
    with atomic_path(path) as tmp:
        Image.fromarray(np.ascontiguousarray(picture, dtype=np.uint8)).save(tmp, format="PNG")


def indexed_png(labels: np.ndarray, palette: np.ndarray, fast: bool = False) -> bytes:
    """The compressed image as PNG bytes: a palette of K <= 256 colours and one index
    per pixel, stored with the fewest bits PNG allows for K colours (1, 2, 4 or 8) and
    zlib's best compression; fast: zlib's fastest level (for a screen). labels: (H, W)
    integers in [0, K), palette: (K, 3) uint8."""
    k = len(palette)
    if not 1 <= k <= 256:
        raise ValueError(f"an indexed PNG holds 1 to 256 colours, got a palette of {k}")
    if labels.min() < 0 or labels.max() >= k:
        raise ValueError(f"labels must lie in [0, {k}), got [{labels.min()}, {labels.max()}]")
    h, w = labels.shape
    im = Image.frombuffer("P", (w, h), np.ascontiguousarray(labels, dtype=np.uint8), "raw", "P", 0, 1)
    im.putpalette(palette.astype(np.uint8).ravel().tolist(), rawmode="RGB")
    buffer = io.BytesIO()
    if fast:
        im.save(buffer, format="PNG", compress_level=1)
    else:
        im.save(buffer, format="PNG", optimize=True,
                bits=next(b for b in (1, 2, 4, 8) if k <= 1 << b))
    return buffer.getvalue()


def save_indexed_png(path: str | os.PathLike, labels: np.ndarray,
                     palette: np.ndarray) -> None:
    """indexed_png(labels, palette) written atomically to path."""
    data = indexed_png(labels, palette)
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data)
