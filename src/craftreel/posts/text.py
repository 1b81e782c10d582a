"""Reading captions: #hashtags and @mentions, and chapter times like "1:42"."""

from __future__ import annotations

import re

# A tag starts after a non-word character (or the start), so "a#b" and URL fragments are not
# tags; letters in any script, digits and underscores, at most 60.
_HASHTAG = re.compile(r"(?<![\w#&])#(\w{1,60})", re.UNICODE)
_MENTION = re.compile(r"(?<![\w@])@([A-Za-z0-9_.]{2,30})")


def hashtags(caption: str) -> list[str]:
    """Lower-case tags in order of first appearance, without duplicates; not all digits."""
    seen: dict[str, None] = {}
    for match in _HASHTAG.finditer(caption):
        tag = match.group(1).lower()
        if not tag.isdigit():
            seen.setdefault(tag, None)
    return list(seen)[:30]


def mentions(caption: str) -> list[str]:
    """Handles mentioned with @, lower case, in order, without duplicates."""
    seen: dict[str, None] = {}
    for match in _MENTION.finditer(caption):
        seen.setdefault(match.group(1).rstrip(".").lower(), None)
    return list(seen)[:30]


def parse_timestamp(text: str) -> float:
    """ "1:42" → 102.0, "1:02:03" → 3723.0, "95" → 95.0, "1:42.5" → 102.5."""
    parts = text.strip().split(":")
    if not 1 <= len(parts) <= 3 or any(not p or p.count(".") > 1 for p in parts):
        raise ValueError(f"not a time: {text!r}")
    if any(not p.replace(".", "", 1).isdigit() for p in parts):
        raise ValueError(f"not a time: {text!r}")
    *whole, last = parts
    seconds = float(last)
    for n, part in enumerate(reversed(whole)):
        if "." in part:
            raise ValueError(f"not a time: {text!r}")
        value = int(part)
        if n == 0 and value >= 60 and len(whole) > 1:
            raise ValueError(f"not a time: {text!r}")
        seconds += value * 60 ** (n + 1)
    if len(parts) > 1 and float(last) >= 60:
        raise ValueError(f"not a time: {text!r}")
    return seconds


def format_timestamp(seconds: float) -> str:
    """102 → "1:42", 3723 → "1:02:03"."""
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
