"""The load's performance knobs and their defaults: the one place the tuned numbers live.

The reader, the writer and the pipeline take their defaults from :data:`DEFAULTS`; nothing else
states a tuned number. Why each default is what it is (the measurements) is in
``benchmarks/README.md``, not here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

__all__ = [
    "ARENA_MAX",
    "ARROW_DECAY_MS",
    "DEFAULTS",
    "MIN_READ_AHEAD_BLOCKS",
    "MMAP_THRESHOLD",
    "Tuning",
    "check_read_ahead",
    "cpu_threads",
]

MIN_READ_AHEAD_BLOCKS = 2
"""The parser reads one block past the rows it yields: with less room ahead every read would wait
out the backpressure gate's cap."""

_MiB = 1024 * 1024

# -- process-wide allocator settings (:func:`.memory.configure_memory`, once per process) ----------
MMAP_THRESHOLD = 16 * _MiB
"""glibc allocations above this are mapped on their own (and unmapped on free)."""
ARENA_MAX = 1
"""glibc malloc arenas: one, shared by every thread (glibc's default, an arena per thread, lets each
encoder and upload thread keep its own freed blocks, so the peak grows with the thread count)."""
ARROW_DECAY_MS = 300
"""How long Arrow's jemalloc (the fallback pool) keeps freed pages for reuse before returning them."""


def check_read_ahead(blocks: int) -> None:
    """Refuse a read-ahead below ``MIN_READ_AHEAD_BLOCKS`` (``ValueError``)."""
    if blocks < MIN_READ_AHEAD_BLOCKS:
        raise ValueError(f"read_ahead_blocks must be at least {MIN_READ_AHEAD_BLOCKS}, not {blocks}")


def cpu_threads() -> int:
    """The cores this process may use (Lambda sets them from the function's memory size)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - platforms without affinity
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class Tuning:
    """Performance knobs of one load. Defaults: see ``benchmarks/README.md`` for the measurements."""

    # -- reading the source ------------------------------------------------------------------
    block_size: int = 4 * _MiB
    """Bytes of CSV the parser takes at a time (one parsed batch per block)."""
    read_ahead_blocks: int = MIN_READ_AHEAD_BLOCKS
    """Raw blocks fetched ahead of the parser (at least ``MIN_READ_AHEAD_BLOCKS``)."""
    csv_threads: bool = False
    """pyarrow's threaded CSV parser instead of its serial one."""
    range_size: int = 8 * _MiB
    """Bytes per ranged GET when the source is fetched in parallel ranges (:mod:`.ranged`)."""
    ranges_in_flight: int = 4
    """GETs of the source in flight at once, the first stream counted, once the parser waits on one
    stream and a ranged GET answers sooner than that stream moves a range (1: one streaming GET).
    Fetched bytes held: at most ``ranges_in_flight * range_size``."""

    # -- encoding and writing ----------------------------------------------------------------
    row_group_rows: int = 1_000_000
    row_group_bytes: int = 36 * _MiB
    """A row group is written when either bound is reached."""
    queue_depth: int = 7
    """Parsed batches waiting between the parser and the encoder(s)."""
    threaded: bool = True
    """Encode on writer thread(s), overlapping the parse."""
    encoders: int = 0
    """Parquet encoder threads, each filling its own file (0: one per core, :func:`cpu_threads`)."""
    file_bytes: int = 128 * _MiB
    """A Parquet file is finished (its upload completed in the background) at this size."""
    part_size: int = 8 * _MiB
    """Multipart upload part size."""
    max_in_flight: int = 3
    """Parts held in memory at once, over all the load's files."""

    # -- process and safety ------------------------------------------------------------------
    tune_memory: bool = True
    """Configure the allocators for a flat peak (:func:`.memory.configure_memory`)."""
    lease_ttl_seconds: float = 300.0
    stop_margin_seconds: float = 10.0
    """With a deadline, the load stops once fewer seconds than this are left: the time it keeps to
    abort its uploads, remove its folder and release its lease."""

    def __post_init__(self) -> None:
        check_read_ahead(self.read_ahead_blocks)  # at construction, not once the load holds the day

    @property
    def encoder_threads(self) -> int:
        """``encoders``, with 0 resolved to the cores available."""
        return self.encoders or cpu_threads()


DEFAULTS = Tuning()
"""The defaults every component starts from."""
