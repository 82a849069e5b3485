"""Process memory settings for a flat peak RSS while streaming, at a low page-fault cost.

Two allocators serve a load, and what matters for both is that freed memory is reused, not handed
back to the OS and faulted in again (a page fault and a zeroed page per 4 KiB when every buffer
is fresh).

- Python's (glibc malloc) holds what passes through Python: socket reads of one CSV block,
  the Parquet writer's pages on their way into the multipart part buffers (recycled by the writer).
  A fixed mmap threshold above a CSV block (``tuning.MMAP_THRESHOLD``) keeps these blocks in the
  heap, where they are reused; above it (or under glibc's default, which moves the threshold
  around) each one was mapped and unmapped.
- Arrow's pool holds the parsed batches, row groups and encoder pages. mimalloc reuses freed pages
  best; jemalloc (with a short decay, ``tuning.ARROW_DECAY_MS``) is the fallback, the system
  allocator the last resort.

After every row group, :func:`trim` returns what both allocators hold free to the OS, so the peak is
the working set rather than what the allocators kept. The measurements behind these choices are in
``benchmarks/README.md`` ("Tuned defaults: parallel encoding").
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys
import threading

import pyarrow as pa

from .tuning import ARENA_MAX, ARROW_DECAY_MS, MMAP_THRESHOLD

__all__ = ["ARENA_MAX", "ARROW_DECAY_MS", "MMAP_THRESHOLD", "configure_memory", "trim"]

log = logging.getLogger(__name__)

_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
_done = False
_libc: ctypes.CDLL | None = None
_lock = threading.Lock()


def configure_memory(mmap_threshold: int = MMAP_THRESHOLD, decay_ms: int = ARROW_DECAY_MS) -> None:
    """Once per process: a fixed glibc mmap threshold above a CSV block, and Arrow allocates from
    mimalloc (jemalloc with a ``decay_ms`` decay where this pyarrow lacks mimalloc, else the system
    allocator).

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
                libc.mallopt(_M_ARENA_MAX, ARENA_MAX)
                libc.malloc_trim.argtypes = [ctypes.c_size_t]
                _libc = libc
            except (OSError, AttributeError) as exc:  # musl and friends: keep the defaults
                log.debug("mallopt unavailable: %s", exc)
        if os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
            return
        pa.set_memory_pool(_arrow_pool(decay_ms))


def _arrow_pool(decay_ms: int) -> pa.MemoryPool:
    try:
        return pa.mimalloc_memory_pool()
    except NotImplementedError:  # a pyarrow built without mimalloc
        pass
    try:
        pool = pa.jemalloc_memory_pool()
        pa.jemalloc_set_decay_ms(decay_ms)
        return pool
    except NotImplementedError:  # nor jemalloc
        return pa.system_memory_pool()


def trim() -> None:
    """Give the memory both allocators hold free back to the OS: glibc's heap pages (``malloc_trim``)
    and the Arrow pool's (``release_unused``). Called after every row group (by each encoder): it
    keeps fragmentation from slowly raising the peak over a long load and makes the peak steady."""
    if _libc is not None:
        _libc.malloc_trim(0)
    pa.default_memory_pool().release_unused()
