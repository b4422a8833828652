"""Peak resident memory of a whole process tree, sampled.

``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss`` is not a measurement of a child's memory: Linux keeps
the largest RSS a process ever had across fork *and* exec, so a dbt subprocess forked from a 1.5 GiB
Python process reports at least 1.5 GiB. Summing ``ru_maxrss`` of parent and children would also add
high-water marks reached at different moments. What we want is the largest amount of memory the tree
held at any one moment: sample the memory of this process and every live descendant, sum, keep the
maximum. Sampling every 0.2 s can miss a spike shorter than that; the figures are a lower bound of the
true peak by at most such a spike.

Each process counts with its **proportional set size** (PSS, Linux's ``/proc/<pid>/smaps_rollup``): a
page that several processes share counts once in the sum, split between them. A plain sum of RSS
counted such pages once per process: a child sampled between its fork and its exec holds all of its
parent's pages, and the benchmark's run BD reported 2,293 MiB for the lbm model selection (this
process 1,085 MiB, and a child with the same pages) where the tree held ~1.2 GiB. Where PSS cannot be
read (no ``smaps_rollup``, no permission), a process counts with its RSS. The names below keep "rss":
resident memory, measured this way.
"""

from __future__ import annotations

import threading
import time

import psutil

MIB = 1024 * 1024


def tree_rss_bytes(root: psutil.Process) -> int:
    """RSS of ``root`` plus all its live descendants, now (processes that exit meanwhile are skipped)."""
    return sum(_tree_rss(root))


def resident_bytes(process: psutil.Process) -> int:
    """``process``'s resident memory, its pages shared with other processes counted by their share (PSS);
    its RSS where that cannot be read."""
    try:
        return process.memory_full_info().pss
    except (psutil.AccessDenied, AttributeError, OSError):
        return process.memory_info().rss


def _tree_rss(root: psutil.Process) -> tuple[int, int]:
    """(resident memory of ``root``, of its live descendants), now (see :func:`resident_bytes`)."""
    try:
        own = resident_bytes(root)
        children = root.children(recursive=True)
    except psutil.NoSuchProcess:
        return 0, 0
    total = 0
    for process in children:
        try:
            total += resident_bytes(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return own, total


class TreeRssSampler:
    """Background thread sampling :func:`tree_rss_bytes` of this process every ``interval`` seconds.

    ``reset()`` starts a new phase (its own maximum); ``peak_bytes`` is the maximum since the last reset,
    ``overall_peak_bytes`` since the start.
    """

    def __init__(self, interval: float = 0.2, pid: int | None = None):
        self.interval = interval
        self._root = psutil.Process(pid)
        self._lock = threading.Lock()
        self._peak = 0
        self._overall = 0
        # (epoch seconds, tree memory bytes, this process's memory bytes (PSS)), every sample
        self.timeline: list[tuple[float, int, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _sample(self) -> None:
        own, children = _tree_rss(self._root)
        value = own + children
        with self._lock:
            self.timeline.append((time.time(), value, own))
            self._peak = max(self._peak, value)
            self._overall = max(self._overall, value)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> "TreeRssSampler":
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def reset(self) -> None:
        with self._lock:
            self._peak = 0
        self._sample()

    def peak_between(self, start: float, end: float) -> tuple[int, int]:
        """(largest tree sample, this process's RSS in that sample) between two epoch times ((0, 0) when
        none fell in the window)."""
        with self._lock:
            return max(((v, own) for t, v, own in self.timeline if start <= t <= end), default=(0, 0))

    @property
    def peak_bytes(self) -> int:
        self._sample()
        with self._lock:
            return self._peak

    @property
    def overall_peak_bytes(self) -> int:
        self._sample()
        with self._lock:
            return self._overall
