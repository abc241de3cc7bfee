"""Hand a batch of numpy arrays from a worker process to its parent through shared memory.

A loader worker (:class:`impax.data.loader.BatchLoader` with ``workers > 0``) returns batches of tens
of MB (an LDIF ``paper`` batch is 28 MB packed). Through a pipe, pickling, the pipe's 64 KiB chunks
and unpickling cost the parent about as much as reading the batch did. Instead the worker writes
every array into one POSIX shared-memory block and returns only a small :class:`Shared` message
(the block's name and each array's key, dtype, shape and offset); the parent maps the block, copies
the arrays out (one ``memcpy`` each) and unlinks it.

Lifetime: the block belongs to the parent from the moment :func:`share` returns. The parent calls
:func:`receive` (copies and unlinks) or :func:`discard` (unlinks) exactly once. Workers are
``spawn``ed, so they share the parent's ``multiprocessing`` resource tracker: a block that neither
call reached (the parent died) is unlinked by the tracker when the parent's processes end.

Values that are not numpy arrays (rare: a Python scalar in a batch) travel in the message itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from multiprocessing import shared_memory
from typing import Any

import numpy as np

#: Array offsets inside a block are multiples of this (cache-line and SIMD friendly).
ALIGN = 64


@dataclass(frozen=True)
class Shared:
    """A batch living in shared-memory block ``name``: ``layout`` rows are (key, dtype, shape, offset)."""

    name: str
    layout: tuple[tuple[str, str, tuple[int, ...], int], ...]
    other: dict[str, Any]


def share(batch: Any) -> Any:
    """Write ``batch``'s arrays into a new shared-memory block; anything but a dict with array bytes is returned as is."""
    if not isinstance(batch, dict):
        return batch
    layout, other, size = [], {}, 0
    for key, value in batch.items():
        if isinstance(value, np.ndarray) and value.dtype != object:
            layout.append((key, value.dtype.str, tuple(value.shape), size))
            size += -(-value.nbytes // ALIGN) * ALIGN
        else:
            other[key] = value
    if size == 0:
        return batch
    shm = shared_memory.SharedMemory(create=True, size=size)
    try:
        for key, dtype, shape, offset in layout:
            np.ndarray(shape, dtype, buffer=shm.buf, offset=offset)[...] = batch[key]
    except BaseException:
        shm.close()
        shm.unlink()
        raise
    shm.close()
    return Shared(shm.name, tuple(layout), other)


def receive(message: Any) -> Any:
    """The batch of a :func:`share` message, as arrays of this process; the block is unlinked."""
    if not isinstance(message, Shared):
        return message
    shm = shared_memory.SharedMemory(name=message.name)
    try:
        out = {key: np.ndarray(shape, dtype, buffer=shm.buf, offset=offset).copy()
               for key, dtype, shape, offset in message.layout}
    finally:
        shm.close()
        shm.unlink()
    out.update(message.other)
    return {key: out[key] for key in [row[0] for row in message.layout] + list(message.other)}


def discard(message: Any) -> None:
    """Free the block of a message that will not be received (an abandoned read)."""
    if isinstance(message, Shared):
        try:
            shm = shared_memory.SharedMemory(name=message.name)
        except FileNotFoundError:
            return
        shm.close()
        shm.unlink()
