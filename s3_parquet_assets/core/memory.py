"""Process memory settings for a flat peak RSS while streaming, at a low page-fault cost.

Two allocators serve a load. Python's (glibc malloc) holds what passes through Python: socket reads,
multipart parts. With glibc's dynamic mmap threshold those multi-MB blocks end up in per-thread heap
arenas and stay resident after they are freed; a fixed 1 MiB threshold returns each one on free.

Arrow's buffers (parsed batches, row groups, encoder pages) churn at about 1 GB/s. Returning each to
the OS on free (the system allocator under that threshold) costs a page fault per 4 KiB on every
reuse: ~1 s of system time per GiB loaded. Arrow's jemalloc pool keeps freed pages for reuse and
gives them back after a short decay instead, so memory stays bounded by the working set plus a
fraction of a second of churn. Measured at 1 GiB csv (benchmarks/README.md): system pool 9.0-9.3 s,
276-294 MB; jemalloc with a 300 ms decay 7.9-8.0 s, 320-345 MB; 1000 ms 350-395 MB.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys
import threading

import pyarrow as pa

__all__ = ["ARROW_DECAY_MS", "configure_memory", "trim"]

log = logging.getLogger(__name__)

ARROW_DECAY_MS = 300
"""How long Arrow's jemalloc keeps freed pages for reuse before returning them to the OS."""

_M_MMAP_THRESHOLD = -3
_done = False
_libc: ctypes.CDLL | None = None
_lock = threading.Lock()


def configure_memory(mmap_threshold: int = 1 << 20, decay_ms: int = ARROW_DECAY_MS) -> None:
    """Once per process: large glibc allocations map and unmap, and Arrow allocates from jemalloc
    with a short decay (the system allocator where this pyarrow has no jemalloc).

    An ``ARROW_DEFAULT_MEMORY_POOL`` set by the operator is respected: the Arrow pool is left alone.
    Safe to call many times; the glibc part does nothing on platforms without glibc.
    """
    global _done  # noqa: PLW0603 - a process-wide, once-only switch
    with _lock:
        if _done:
            return
        _done = True
        if sys.platform.startswith("linux"):
            global _libc  # noqa: PLW0603 - set once, with _done
            try:
                libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
                libc.mallopt(_M_MMAP_THRESHOLD, mmap_threshold)
                libc.malloc_trim.argtypes = [ctypes.c_size_t]
                _libc = libc
            except (OSError, AttributeError) as exc:  # musl and friends: keep the defaults
                log.debug("mallopt unavailable: %s", exc)
        if os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
            return
        try:
            pool = pa.jemalloc_memory_pool()
            pa.jemalloc_set_decay_ms(decay_ms)
        except NotImplementedError:  # a pyarrow built without jemalloc
            pool = pa.system_memory_pool()
        pa.set_memory_pool(pool)


def trim() -> None:
    """Give freed glibc heap pages back to the OS (``malloc_trim``). Called after every row group: it
    keeps heap fragmentation from slowly raising the peak over a long load (4 GiB gz peaked at
    403 MB without it) and makes the peak steady. Fewer malloc arenas did not help."""
    if _libc is not None:
        _libc.malloc_trim(0)
