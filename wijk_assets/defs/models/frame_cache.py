"""The training mart as pandas, read once for as long as it does not change.

Every outcome's run reads the whole training mart (~26k rows x 676 columns on the national data) in
four assets: model selection, model, gate 3 and explanations; the release monitoring reads it after
them. A national build runs six such runs one after another, and the mart is the same in all of them;
reading it into pandas took ~1-1.3 s per run.

So the frame is kept between runs, under an **exact digest** of what it is made of, computed in DuckDB
before anything is read (~0.1-0.2 s): the mart's column names and types, and each row's hash over every
column, sorted (the frame's own order is fixed by ``ORDER BY area_code, outcome_year``, unique keys),
plus every column of the feature catalog the frame's catalog is built from. A rebuilt mart with other
values, rows or columns has another digest and is read afresh; one rebuilt from the same inputs (the
builds are deterministic) is the same table and is not read again.

Within one run the digest is taken once (nothing rewrites the mart inside a run after its first reader:
dbt is upstream of every reader). Callers get copies, except those that ask for the kept frame to
select from (model selection and model, gate 3, explanations, release monitoring: each takes its rows
or columns into a new frame first).

Memory: one frame is kept at a time (~150 MB). The runner drops it before a run that has no reader of
the mart (:func:`reads_training_frame`), so it never sits on a raw load's or a report's peak, and
before a different mart is read (the old frame goes first). Runs that Dagster starts in their own
process (``dagster dev``) simply start empty.

The rows' digest is :func:`wijk_assets.lib.content_version.exact_rows_digest`, as the explanations'
reuse check uses it (DuckDB's 64-bit ``hash()`` of typed values: values DuckDB holds equal, 0.0 and
-0.0, hash alike).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable

import dagster as dg
import pandas as pd

# (database path, digest) -> (frame, catalog); at most one entry
_FRAMES: dict[tuple[str, str], tuple[pd.DataFrame, pd.DataFrame]] = {}
# (database path, run id) -> digest of the mart as that run first saw it; at most one entry
_RUN_DIGESTS: dict[tuple[str, str], str] = {}


def mart_digest(con) -> str:
    """Exact digest of the training rows (every column; rows with a feature year) and of the catalog
    columns :func:`wijk_assets.defs.models.assets.load_training_frame` reads."""
    from wijk_assets.lib.content_version import exact_rows_digest

    rows = exact_rows_digest(con, "marts", "mart_wijk_training", "feature_year IS NOT NULL")
    catalog = con.execute(
        "SELECT feature, label, unit, source, cbs_table_ids, sensitive FROM marts.feature_catalog ORDER BY ALL"
    ).fetchall()
    payload = "\n".join([rows, *("\x1f".join(map(repr, row)) for row in catalog)])
    return hashlib.sha256(payload.encode()).hexdigest()


def cached_frame(path: str, run_id: str, con, read: Callable[[], tuple[pd.DataFrame, pd.DataFrame]],
                 *, copy_frame: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Copies of the kept (frame, catalog) when the mart is the one they were read from; else ``read()``
    (after dropping the kept ones) and keep that. ``copy_frame=False``: the kept frame itself, for a
    caller that only selects rows or columns from it (a new frame) and never writes to it: a copy of the
    wide frame costs ~0.1-0.2 s in a run that starts with freshly released memory."""
    digest = _RUN_DIGESTS.get((path, run_id))
    if digest is None:
        digest = mart_digest(con)
        _RUN_DIGESTS.clear()
        _RUN_DIGESTS[(path, run_id)] = digest
    key = (path, digest)
    if key not in _FRAMES:
        _FRAMES.clear()  # the old frame goes before the new one is read
        _FRAMES[key] = read()
    frame, catalog = _FRAMES[key]
    return (frame.copy() if copy_frame else frame), catalog.copy()


def reads_training_frame(keys: Iterable[dg.AssetKey]) -> bool:
    """Whether a run of ``keys`` reads the training frame through :func:`cached_frame`."""
    from wijk_assets.keys import (
        CHANGES_KEY, DRIVERS_KEY, GATE_KEY, IMPORTANCE_KEY, MODEL_KEY, RESIDUALS_KEY, SELECTION_KEY, SHAP_KEY,
    )

    readers = {SELECTION_KEY, MODEL_KEY, GATE_KEY, SHAP_KEY, IMPORTANCE_KEY, DRIVERS_KEY, RESIDUALS_KEY, CHANGES_KEY}
    return any((dg.AssetKey.from_user_string(k) if isinstance(k, str) else dg.AssetKey.from_coercible(k)) in readers
               for k in keys)


def forget_run_digests() -> None:
    """A run is over: the next run takes the digest again (the mart may have been rebuilt in between)."""
    _RUN_DIGESTS.clear()


def forget_training_frames() -> None:
    """Drop the kept frame (before a run that does not read it)."""
    _FRAMES.clear()
    _RUN_DIGESTS.clear()


__all__ = ["cached_frame", "forget_run_digests", "forget_training_frames", "mart_digest", "reads_training_frame"]
