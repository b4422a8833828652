"""Handing freed memory back to the operating system between steps (no DuckDB, no Dagster)."""

from __future__ import annotations

import functools


def release_free_memory() -> None:
    """Hand memory that large intermediate frames freed back to the operating system.

    A raw RIVM year passes ~2 M rows through pandas and Arrow; once they are freed, Arrow's memory pool
    (mimalloc) and glibc's malloc keep the pages for reuse, so the process stayed ~0.6 GB above what it
    held, and every later step's peak sat on top of that. Both are asked to return what is unused
    (glibc's ``malloc_trim``; skipped where there is no glibc).
    """
    try:
        import pyarrow as pa

        pa.default_memory_pool().release_unused()
    except ImportError:  # pragma: no cover - pyarrow comes with duckdb's arrow support
        pass
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim():
    """glibc's ``malloc_trim``, looked up once per process (None without glibc).

    ``ctypes.util.find_library`` runs ``/sbin/ldconfig -p`` in a child process. Called on every release,
    that forked the whole process (~1 GB during a national RIVM load) dozens of times per build: each
    fork costs time, and until the child's exec its memory counts a second time in the process tree."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        return ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim
        return None
