"""Peak resident memory of a whole process tree, sampled.

``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss`` is not a measurement of a child's memory: Linux keeps
the largest RSS a process ever had across fork *and* exec, so a dbt subprocess forked from a 1.5 GiB
Python process reports at least 1.5 GiB. Summing ``ru_maxrss`` of parent and children would also add
high-water marks reached at different moments. What we want is the largest amount of memory the tree
held at any one moment: sample the RSS of this process and every live descendant, sum, keep the
maximum. Sampling every 0.2 s can miss a spike shorter than that; the figures are a lower bound of the
true peak by at most such a spike.
"""

from __future__ import annotations

import threading
import time

import psutil

MIB = 1024 * 1024


def tree_rss_bytes(root: psutil.Process) -> int:
    """RSS of ``root`` plus all its live descendants, now (processes that exit meanwhile are skipped)."""
    return sum(_tree_rss(root))


def _tree_rss(root: psutil.Process) -> tuple[int, int]:
    """(RSS of ``root``, RSS of its live descendants), now."""
    try:
        own = root.memory_info().rss
        children = root.children(recursive=True)
    except psutil.NoSuchProcess:
        return 0, 0
    total = 0
    for process in children:
        try:
            total += process.memory_info().rss
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
        # (epoch seconds, tree RSS bytes, this process's RSS bytes), every sample
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
