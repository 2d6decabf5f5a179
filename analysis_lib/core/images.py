"""Opening image files: every entry point (benchmarks, the full-scale check, the pair probe) reads
images here, so each gets the same orientation, the same RGB conversion and the same clear errors.

An image is turned upright as its EXIF orientation tag says, as viewers display it (a phone photo stored
sideways is scored as the photographer saw it). It is usable when PIL can decode it, each side has at least
``MIN_IMAGE_SIDE`` pixels, and its pixels have a known range: 16-bit images are scaled by their real bit depth,
not clipped.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from analysis_lib.core.progress import progress_bar

MIN_IMAGE_SIDE = 16  # pixels; smaller files hold no usable picture and break the models' image processors
SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
NO_RANGE_MODES = frozenset({"I", "F"})  # 32-bit integer or float pixels: no standard white level


class ImageError(ValueError):
    """An image file that cannot be used: missing, unreadable, too small or of unknown pixel range."""


def to_rgb(image: Image.Image) -> Image.Image:
    """An 8-bit RGB copy of ``image``; 16-bit pixels are scaled by 255 / 65535 (PIL alone would clip them)."""
    if image.mode in SIXTEEN_BIT_MODES:
        eight_bit = np.round(np.asarray(image, dtype=np.float64) / 257).astype(np.uint8)
        return Image.fromarray(eight_bit).convert("RGB")
    return image.convert("RGB")


def usable_image(image: Image.Image, name: str) -> Image.Image:
    """``image`` decoded and in RGB, or one ``ImageError`` naming ``name`` and saying what to do."""
    width, height = image.size
    if min(width, height) < MIN_IMAGE_SIDE:
        raise ImageError(
            f"image {name} is {width}x{height} pixels; images need at least {MIN_IMAGE_SIDE} pixels on each side"
        )
    if image.mode in NO_RANGE_MODES:
        raise ImageError(
            f"image {name} has 32-bit {'float' if image.mode == 'F' else 'integer'} pixels (no standard white "
            "level); save it as an 8- or 16-bit PNG or a JPEG"
        )
    return to_rgb(image)


def _opened(source: Path | io.BytesIO, name: str) -> Image.Image:
    """Open, decode, turn upright (EXIF orientation) and convert ``source``; PIL's failures become one ``ImageError``
    naming ``name``."""
    try:
        with Image.open(source) as image:
            return usable_image(ImageOps.exif_transpose(image), name)
    except ImageError:
        raise
    except FileNotFoundError:
        raise ImageError(f"image not found: {name}") from None
    except UnidentifiedImageError:
        raise ImageError(_unreadable(name, "empty, or not an image format PIL knows")) from None
    except (Image.DecompressionBombError, OSError, ValueError) as err:
        raise ImageError(_unreadable(name, str(err))) from None


def _unreadable(name: str, reason: str) -> str:
    """The message for an image file that does not decode."""
    return f"image {name} cannot be read ({reason}); re-download it or re-export it as JPEG or PNG"


def load_image(path: Path) -> Image.Image:
    """The RGB image at ``path``, or one ``ImageError`` naming the file."""
    return _opened(Path(path), str(path))


def image_from_bytes(content: bytes, name: str) -> Image.Image:
    """An RGB image from a file's bytes (e.g. an upload), or one ``ImageError`` naming ``name``."""
    return _opened(io.BytesIO(content), name)


def verify_images(paths: Iterable[Path], desc: str = "checking images") -> int:
    """Open every image once, with a progress bar; the number checked, or one ``ImageError`` listing every bad file."""
    paths = list(dict.fromkeys(Path(p) for p in paths))
    bad = []
    for path in progress_bar(paths, desc=desc, unit="image"):
        try:
            load_image(path)
        except ImageError as err:
            bad.append(str(err))
    if bad:
        listing = "\n".join(f"  - {problem}" for problem in bad)
        raise ImageError(f"{len(bad)} of {len(paths)} images cannot be used:\n{listing}")
    return len(paths)
