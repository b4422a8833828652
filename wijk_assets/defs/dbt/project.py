"""The dbt project as Dagster sees it: its folders, the CLI resource, and its parsed state.

Two things come out of ``dbt parse``, and they depend on different inputs:

- the **manifest** (``target/manifest.json``), from which the dbt assets are defined. It depends on the
  project files only; it is made again when it is missing or older than any project file
  (:func:`prepare_manifest_for_definitions`, at import time, before the assets can be defined).
- the **partial-parse state** (``target/partial_parse.msgpack``), which dagster-dbt copies into every dbt
  invocation so dbt parses only what changed. dbt also hashes the rendered profile, the database path
  included, into it: made for another warehouse file, every invocation parses the whole project again
  ("Unable to do partial parsing because profile has changed", ~5 s instead of ~2 s each).
  :func:`prepare_parse_state` makes it for the warehouse a run writes to before the first dbt invocation.

A full build (``runner.materialize.materialize_all``) starts that parse in the background
(:func:`parse_state_in_background`) before its raw stage, which runs no dbt, so the ~4-5 s parse of a new warehouse
file runs beside the raw loads instead of inside the first dbt step.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

from dagster_dbt import DbtCliResource, DbtProject
from packaging import version

from wijk_assets.settings import DBT_PROJECT_DIR, load_settings

DBT_TARGET_PATH = load_settings().dbt_target_path
dbt_project = DbtProject(project_dir=DBT_PROJECT_DIR, target_path=DBT_TARGET_PATH)

# Which warehouse file the project target's partial-parse state was made for.
PARSED_FOR_FILE = "parsed_for_duckdb.txt"


def dbt_executable() -> str:
    """The ``dbt`` beside this interpreter: an unactivated venv otherwise finds none on PATH."""
    candidate = Path(sys.executable).with_name("dbt")
    return str(candidate) if candidate.exists() else "dbt"


class WijkDbtCliResource(DbtCliResource):
    """dagster-dbt's CLI resource without its two per-invocation start-up costs we do not use, and with
    dbt run in this process during a full build or a refresh (:meth:`cli`).

    Each ``cli()`` call runs ``dbt --version`` in a subprocess (the resource is built anew for every
    run, so its cache does not help) and loads the dbt project, profile and macros in this process to
    make an adapter handle. That handle serves only ``fetch_row_counts()`` / ``fetch_column_metadata()``;
    this project reads row counts, column lineage and content versions itself after dbt has finished
    (``assets.with_column_lineage``). Together ~3 s of every dbt invocation on the 2-core machine.
    """

    @property
    def _venvs_own_dbt(self) -> bool:
        """The ``dbt`` beside this interpreter: the dbt-core installed here is the one it runs."""
        return Path(self.dbt_executable).parent == Path(sys.executable).parent

    @property
    def _cli_version(self) -> version.Version:  # type: ignore[override]
        if self._venvs_own_dbt:
            return version.parse(metadata.version("dbt-core"))
        return DbtCliResource._cli_version.func(self)  # another dbt: dagster-dbt asks `dbt --version`

    def _initialize_dbt_core_adapter(self, args):  # noqa: ARG002 - see the class docstring
        return None

    def cli(self, args, **kwargs):
        """dagster-dbt's ``cli``; inside ``in_process.dbt_in_this_process`` (a full build, a refresh) the venv's
        own dbt runs in this process instead of a subprocess (:mod:`wijk_assets.defs.dbt.in_process`)."""
        from wijk_assets.defs.dbt import in_process

        if not in_process.active() or not self._venvs_own_dbt:
            return super().cli(args, **kwargs)
        with in_process.popen_in_process():
            return super().cli(args, **kwargs)


def dbt_resource() -> DbtCliResource:
    return WijkDbtCliResource(project_dir=dbt_project, dbt_executable=dbt_executable())


def _manifest_is_stale(manifest: Path) -> bool:
    if not manifest.exists():
        return True
    built = manifest.stat().st_mtime
    sources = [
        p
        for pattern in ("*.yml", "models/**/*", "seeds/**/*", "macros/**/*", "tests/**/*")
        for p in DBT_PROJECT_DIR.glob(pattern)
        if p.is_file()
    ]
    return any(p.stat().st_mtime > built for p in sources)


def _parsed_for(manifest: Path) -> str | None:
    marker = manifest.with_name(PARSED_FOR_FILE)
    return marker.read_text(encoding="utf-8").strip() if marker.exists() else None


def _warehouse(duckdb_path: str | Path | None) -> str:
    return str(Path(duckdb_path if duckdb_path is not None else load_settings().duckdb_path).resolve())


def _start_parse(path: str):
    """``dbt parse`` into the project target for warehouse ``path``; returns the running invocation.

    The profile renders the database path from WIJK_DUCKDB_PATH, which the subprocess takes from this
    process's environment when it starts (the dbt steps set it the same way, ``assets._point_dbt_at``)."""
    os.environ["WIJK_DUCKDB_PATH"] = path
    return dbt_resource().cli(["parse", "--quiet"], target_path=dbt_project.target_path)


def _finish_parse(invocation, path: str) -> None:
    invocation.wait()  # raises on a failed parse, with dbt's message
    dbt_project.manifest_path.with_name(PARSED_FOR_FILE).write_text(path, encoding="utf-8")


# The background parse this process started (see start_parse_state): (warehouse path, invocation).
_pending: list[tuple[str, object]] = []


def prepare_manifest_for_definitions() -> Path:
    """The manifest the dbt assets are defined from: parsed (in the foreground: the assets need it) when
    missing or older than any project file, for the settings' warehouse file. A manifest parsed for
    another warehouse file defines the same assets, so it is used as it is."""
    manifest = dbt_project.manifest_path
    if _manifest_is_stale(manifest):
        path = _warehouse(None)
        _finish_parse(_start_parse(path), path)
    return manifest


def start_parse_state(duckdb_path: str | Path | None = None) -> bool:
    """Start ``dbt parse`` for warehouse ``duckdb_path`` in a subprocess and return at once, when the
    project target's partial-parse state was made for another file (True if a parse was started).
    :func:`prepare_parse_state` waits for it. Call it only once the dbt assets are defined: the parse
    writes the manifest again."""
    path = _warehouse(duckdb_path)
    if _pending or _parsed_for(dbt_project.manifest_path) == path:
        return False
    _pending.append((path, _start_parse(path)))
    return True


def finish_parse_state() -> None:
    """Wait for a background parse this process started, if any, and record what it was made for."""
    while _pending:
        path, invocation = _pending.pop()
        _finish_parse(invocation, path)


def prepare_parse_state(duckdb_path: str | Path | None = None) -> Path:
    """Before a dbt invocation against ``duckdb_path``: the manifest is current and the partial-parse
    state was made for that warehouse file. Waits for a background parse (:func:`start_parse_state`),
    otherwise parses here when needed; for the same file and an unchanged project this is one file read."""
    manifest = dbt_project.manifest_path
    path = _warehouse(duckdb_path)
    finish_parse_state()
    if _manifest_is_stale(manifest) or _parsed_for(manifest) != path:
        _finish_parse(_start_parse(path), path)
    return manifest


@contextmanager
def parse_state_in_background(duckdb_path: str | Path, log=print) -> Iterator[None]:
    """Around a full build: :func:`start_parse_state` on entry; on exit, wait for that parse if no dbt
    step did (a build stopped before dbt). A parse that failed there is logged, not raised: it must not
    hide the build's own error, and the next dbt step parses again and fails with dbt's message."""
    start_parse_state(duckdb_path)
    try:
        yield
    finally:
        try:
            finish_parse_state()
        except Exception as error:  # noqa: BLE001 - see the docstring
            log(f"dbt parse for {duckdb_path} failed: {' '.join(str(error).split())[:300]}")


__all__ = ["DBT_TARGET_PATH", "PARSED_FOR_FILE", "WijkDbtCliResource", "dbt_executable", "dbt_project", "dbt_resource",
           "finish_parse_state", "parse_state_in_background", "prepare_manifest_for_definitions",
           "prepare_parse_state", "start_parse_state"]
