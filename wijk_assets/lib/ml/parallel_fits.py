"""LightGBM fits of the model selection (:mod:`wijk_assets.lib.ml.selection`) and of the model step
(:mod:`wijk_assets.lib.ml.model_fits`) in worker processes.

LightGBM's C API is not thread-safe across boosters (fits in parallel threads crashed the process), so
parallel fits run in worker processes, started with "spawn" (a clean interpreter: no forked OpenMP
state, no copy of the caller's Dagster/DuckDB objects) on first use and kept until the run ends (see
:func:`run_fits`). Each worker reads a
call's feature matrices once and bins them itself exactly as the caller would (same values, same
params), so every fit -- and every result -- is identical to the serial path's. The worker side is
:mod:`wijk_assets.lib.lgbm_fits` (numpy and LightGBM only, so a worker starts in a fraction of the time).

"""

from __future__ import annotations

import atexit
import json
import multiprocessing
import shutil
import sys
import tempfile
import threading
import types
import uuid
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from wijk_assets.lib.lgbm_fits import (
    _default_n_jobs, _default_workers, clear_state, fit_task, ready, state_fit_task, worker_init,
)

_POOL: dict[str, object] = {}
_POOL_LOCK = threading.Lock()


def run_fits(payloads, matrices, y, names, seed, n_jobs, workers) -> list[tuple[dict[int, np.ndarray], str | None]]:
    """Every fit of ``payloads``, in order: in this process, or in ``workers`` worker processes. Each
    gives its predictions per checkpoint, and its model text when the payload's last item is true.

    In worker processes each fit gets ``n_jobs // workers`` LightGBM threads (at least one): two
    processes with two spinning OpenMP threads each on two cores are several times slower than one
    thread each (see :func:`wijk_assets.lib.ml.training._default_n_jobs`). Predictions do not depend on
    the thread count.

    The worker processes are started on first use and kept (:func:`fit_workers`) until
    :func:`shutdown_fit_workers` (the run engine calls it when a run ends) or the process exits: an
    outcome's run calls this twice (the selection's fits, the model's), and a spawned worker needs
    ~0.4 s to start. The matrices of a call go to the workers as ``.npy`` files in a temporary folder
    (removed when the call returns), read back bit for bit."""
    workers = _default_workers() if workers is None else max(1, int(workers))
    if workers == 1 or len(payloads) < 2:
        worker_init(matrices, y, names, seed, n_jobs, lean=False)
        try:
            return [fit_task(p) for p in payloads]
        finally:
            clear_state()
    per_fit = max(1, (n_jobs if n_jobs is not None else _default_n_jobs()) // min(workers, len(payloads)))
    folder = Path(tempfile.mkdtemp(prefix="wijk_fits_"))
    try:
        feature_sets = list(matrices)
        for number, feature_set in enumerate(feature_sets):
            np.save(folder / f"{number}.npy", np.ascontiguousarray(matrices[feature_set]))
        np.save(folder / "y.npy", np.asarray(y))
        (folder / "index.json").write_text(json.dumps({"feature_sets": feature_sets, "names": names}), encoding="utf-8")
        state = (uuid.uuid4().hex, str(folder), int(seed), per_fit)
        for attempt in (1, 2):
            pool = fit_workers(workers)
            try:
                futures = [pool.submit(state_fit_task, state, payload) for payload in payloads]
                return [future.result() for future in futures]
            except BrokenProcessPool:
                # a worker died (killed, out of memory): start new ones and run the fits once more
                shutdown_fit_workers()
                if attempt == 2:
                    raise
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    raise AssertionError("unreachable")


def fit_workers(workers: int) -> ProcessPoolExecutor:
    """The process's fit workers ("spawn": a clean interpreter, no forked OpenMP state and no copy of the
    caller's Dagster/DuckDB objects), started on first use with ``workers`` processes and kept until
    :func:`shutdown_fit_workers`, the process's exit, or a call for another number of workers."""
    with _POOL_LOCK:
        if _POOL.get("workers") != workers:
            _shutdown_locked()
            pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
            with _lean_workers():
                # the processes start here, while the caller's __main__ is hidden
                list(pool.map(ready, range(workers)))
            _POOL.update(pool=pool, workers=workers)
        return _POOL["pool"]  # type: ignore[return-value]


def shutdown_fit_workers() -> None:
    with _POOL_LOCK:
        _shutdown_locked()


def _shutdown_locked() -> None:
    pool = _POOL.pop("pool", None)
    _POOL.pop("workers", None)
    if pool is not None:
        pool.shutdown(wait=True, cancel_futures=True)


atexit.register(shutdown_fit_workers)


@contextmanager
def _lean_workers():
    """Start the worker processes without the caller's ``__main__``.

    A "spawn" child first imports the parent's main module (a CLI, ``dagster``'s run worker, a script),
    with everything that imports: Dagster, dbt, Great Expectations. Each fit worker then held ~140-560 MB
    it never uses (measured: 367 MB per worker from a bare script, 508 MB when the script imported
    Dagster and the definitions, ~930 MB from a script that built the definitions), which took the lbm
    selection's process tree over 2 GiB. The workers need only :mod:`wijk_assets.lib.lgbm_fits`, so the
    parent's main module is hidden while they start."""
    main = sys.modules.get("__main__")
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        if main is not None:
            sys.modules["__main__"] = main
