"""Stamps: how the processes on one host tell each other's caches that someone's view changed.

A :class:`Stamps` table is a file of 64-bit values, ``run/stamps`` in the var dir, that every
process of the app using that var dir maps (web workers, ``craftreel worker``). A person's stamp
is the slot their id hashes to; two slots are shared: everyone's, and Discover's order
(``"ranks"``). A write that changes what a person's cached views would show *moves* their stamp
— writes a fresh random value into it — once its transaction has committed; one that may change
anyone's moves everyone's. A cache keeps, with each entry, the stamps it read *before* reading
the data, and drops the entry when any differs.

Moving writes a random value rather than adding one: two processes moving the same slot at
once cannot then leave it at a value a cache already holds. Two people whose ids share a slot
only cost each other a few needless misses.

The table is per var dir, so per host: a write made on another host (or by a process with a
var dir of its own) is not seen here, and the caches' own time limits bound how long that
goes unnoticed.
"""

from __future__ import annotations

import mmap
import os
import secrets
import struct
from collections.abc import Iterable
from pathlib import Path
from typing import Literal
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from craftreel.core.db import UnitOfWork

#: Slots in a table (8 bytes each): 512 KiB, few enough collisions for a million people.
SLOTS = 1 << 16

#: Whose stamp: a person's (by id), or one of the shared ones — ``"everyone"``'s, which any
#: view may depend on, and ``"ranks"``, Discover's order.
Stamp = UUID | Literal["everyone", "ranks"]
_SHARED = {"everyone": 0, "ranks": 1}

_STAMPS_KEY = "craftreel_stamps"
_PENDING_KEY = "craftreel_stamps_pending"


class Stamps:
    """A table of stamps, in the file at ``path`` (shared by the processes mapping it), or in
    this process's memory alone when ``path`` is None."""

    def __init__(self, path: Path | None, slots: int = SLOTS) -> None:
        self.slots = slots
        size = 8 * slots
        if path is None:
            self._map = mmap.mmap(-1, size)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                if os.fstat(fd).st_size < size:
                    os.ftruncate(fd, size)  # zeroes; growing an existing table keeps its stamps
                self._map = mmap.mmap(fd, size)
            finally:
                os.close(fd)
        self._values = memoryview(self._map).cast("Q")

    def slot(self, stamp: Stamp) -> int:
        if isinstance(stamp, UUID):
            return len(_SHARED) + stamp.int % (self.slots - len(_SHARED))
        return _SHARED[stamp]

    def read(self, stamps: Iterable[Stamp]) -> tuple[int, ...]:
        """These stamps' values now, to keep with what is read next."""
        values = self._values
        return tuple(values[self.slot(stamp)] for stamp in stamps)

    def move(self, stamps: Iterable[Stamp]) -> None:
        """Give these stamps fresh values."""
        values = self._values
        for slot in {self.slot(stamp) for stamp in stamps}:
            values[slot] = struct.unpack("Q", secrets.token_bytes(8))[0] | 1


def attach_stamps(sessions: async_sessionmaker[AsyncSession], stamps: Stamps) -> None:
    """Every unit of work on ``sessions`` can move stamps (:func:`move_on_commit`)."""
    info = dict(sessions.kw.get("info") or {})
    info[_STAMPS_KEY] = stamps
    sessions.configure(info=info)


def move_on_commit(uow: UnitOfWork, stamps: Iterable[Stamp]) -> None:
    """Move these stamps once ``uow`` commits; not if it rolls back. A session made without
    :func:`attach_stamps` (a bare test session) moves none."""
    info = uow.session.info
    table = info.get(_STAMPS_KEY)
    if table is None:
        return
    pending: set[Stamp] | None = info.get(_PENDING_KEY)
    if pending is None:
        pending = info[_PENDING_KEY] = set()
        uow.after_commit(_move_pending, table, pending)
    pending.update(stamps)


def _move_pending(table: Stamps, pending: set[Stamp]) -> None:
    table.move(pending)
    pending.clear()
