"""CPU-bound image work, run in a process pool by ``ImageHandler``.

Everything here is a plain module-level function of bytes and ints, so that a
process pool can pickle the call: never pass a handler or a bound method.
"""

from __future__ import annotations

import io
from typing import Any


class NotAnImage(ValueError):
    """The bytes are not an image Pillow can decode."""


#: Formats accepted from clients (Pillow format names).
ACCEPTED_FORMATS = frozenset({"PNG", "JPEG", "GIF", "WEBP", "BMP"})

#: Refuse images whose decoded size would exceed this many pixels (a "decompression
#: bomb": a few KB of PNG can claim 100,000 x 100,000 pixels).
MAX_PIXELS = 40_000_000


def make_thumbnail(data: bytes, size: int = 128) -> dict[str, Any]:
    """Decode *data*, shrink it to fit *size* x *size*, return a PNG thumbnail.

    Returns ``{"png": bytes, "width", "height", "format", "original_width",
    "original_height"}``. Raises :class:`NotAnImage` for bytes Pillow cannot
    decode, an unaccepted format or an image over :data:`MAX_PIXELS`.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            fmt = img.format or ""
            if fmt not in ACCEPTED_FORMATS:
                raise NotAnImage(f"unsupported image format {fmt or 'unknown'}")
            width, height = img.size
            if width * height > MAX_PIXELS:
                raise NotAnImage(f"image too large: {width}x{height} pixels")
            img.load()
            thumb = img.convert("RGBA") if img.mode not in ("RGB", "RGBA", "L", "LA") else img
            thumb = thumb.copy()
    except NotAnImage:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise NotAnImage("image too large") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        # Pillow raises any of these for truncated or malformed files.
        raise NotAnImage(f"not a decodable image ({type(exc).__name__})") from None
    thumb.thumbnail((size, size))
    out = io.BytesIO()
    thumb.save(out, format="PNG", optimize=False)
    return {
        "png": out.getvalue(),
        "width": thumb.width,
        "height": thumb.height,
        "format": fmt,
        "original_width": width,
        "original_height": height,
    }
