"""Where media bytes live. Local disk by default; object keys are ours, never user file names."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Protocol

from craftreel.core.errors import InvalidInput


class Storage(Protocol):
    async def put(self, key: str, data: bytes, content_type: str) -> None:
        """Store ``data`` at ``key`` atomically (readers never see half a file)."""
        ...

    async def delete(self, key: str) -> None:
        """Remove ``key``; removing a missing key is not an error."""
        ...

    def public_url(self, key: str) -> str:
        """The URL a browser fetches ``key`` from."""
        ...


def _check_key(key: str) -> str:
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise InvalidInput("Bad storage key.", key=key)
    return key


class LocalStorage:
    """Files under a folder, served by the app at ``/media/``."""

    def __init__(self, root: Path, url_prefix: str = "/media/") -> None:
        self.root = root
        self.url_prefix = url_prefix

    def path(self, key: str) -> Path:
        return self.root / _check_key(key)

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        path = self.path(key)

        def write() -> None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            tmp.write_bytes(data)
            tmp.replace(path)

        await asyncio.to_thread(write)

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self.path(key).unlink, missing_ok=True)

    def public_url(self, key: str) -> str:
        return self.url_prefix + _check_key(key)
