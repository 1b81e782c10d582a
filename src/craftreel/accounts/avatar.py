"""Avatar images: validated, turned upright, stripped of EXIF/GPS, cropped square and resized."""

from __future__ import annotations

import io
import warnings

from PIL import Image, ImageOps, UnidentifiedImageError

from craftreel.core.errors import DomainError, PayloadTooLarge

AVATAR_SIZE = 512
ALLOWED_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "GIF"})


class ImageInvalid(DomainError):
    """The file is not an image we accept."""

    status_code = 400
    code = "image_invalid"
    message = "That file is not a JPEG, PNG, WebP or GIF image."


class AvatarTooLarge(PayloadTooLarge):
    """The avatar file is over the byte limit."""

    code = "avatar_too_large"
    message = "That image is too large."


def process_avatar(data: bytes, max_bytes: int, max_pixels: int) -> bytes:
    """A clean square WebP from an uploaded image, or a clear error."""
    if len(data) > max_bytes:
        raise AvatarTooLarge(max_bytes=max_bytes)
    if not data:
        raise ImageInvalid("That file is empty.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as probe:
                if probe.format not in ALLOWED_FORMATS:
                    raise ImageInvalid()
                width, height = probe.size
                if width * height > max_pixels:
                    raise ImageInvalid("That image has too many pixels.", max_pixels=max_pixels)
                probe.verify()
            with Image.open(io.BytesIO(data)) as image:
                image.load()
                upright = ImageOps.exif_transpose(image)
    except (
        UnidentifiedImageError,
        Image.DecompressionBombError,
        Image.DecompressionBombWarning,
        OSError,
        SyntaxError,
        ValueError,
    ) as exc:
        raise ImageInvalid() from exc
    square = ImageOps.fit(
        upright.convert("RGB"), (AVATAR_SIZE, AVATAR_SIZE), Image.Resampling.LANCZOS
    )
    out = io.BytesIO()
    # A fresh image carries no EXIF, GPS or ICC-borne device tags; nothing is copied over.
    square.save(out, format="WEBP", quality=85, method=4)
    return out.getvalue()
