"""Run-time settings: the only module that reads the environment.

Every knob a municipality's data team may need to turn without touching code lives here, with the
environment variable that sets it. Defaults make a fresh clone work beside ``../shared/data``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent
DBT_PROJECT_DIR = REPO_ROOT / "dbt_project"

# The documented default: the shared data folder that sits beside the repository root.
DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "data"
DEFAULT_DUCKDB_PATH = REPO_ROOT / "data" / "wijk_assets.duckdb"
DEFAULT_GEMEENTE = "GM0106"  # Assen, the reference case


def _env_path(name: str, default: Path | None) -> Path | None:
    value = os.environ.get(name, "").strip()
    if value:
        return Path(value).expanduser().resolve()
    return default


# The schemas of the warehouse. A database file named after one of them (raw.duckdb) makes DuckDB's
# catalog name equal to the schema name and every two-part table name ambiguous.
WAREHOUSE_SCHEMAS = frozenset({"raw", "raw_staging", "staging", "intermediate", "marts", "ml", "monitoring",
                               "publish", "reports", "audit", "quarantine", "main"})


@dataclass(frozen=True)
class Settings:
    """Resolved settings; build with :func:`load_settings` so environment changes are picked up."""

    data_dir: Path | None
    duckdb_path: Path
    cbs_base_url: str | None
    gemeente: str
    min_inhabitants: int = 50
    min_respondents: int = 10
    sensitive_opt_in: tuple[str, ...] = field(default_factory=tuple)
    release_sensor_interval_seconds: int = 3600
    # LightGBM threads per fit, and worker processes of the model selection's fits. Built here directly:
    # 1 and 1 (safe where other work shares the cores, e.g. the test suite's parallel workers: spawned
    # selection workers there cost ~16 % more CPU for nothing, measured on fys); from the environment
    # (load_settings): WIJK_ML_N_JOBS and WIJK_ML_WORKERS, default the CPU count up to 2 (see
    # training._default_n_jobs and _default_workers). Results are identical for any value of either.
    ml_n_jobs: int = 1
    ml_workers: int = 1
    dbt_target_path: Path = Path("target")  # relative paths are inside dbt_project/
    dagster_home: Path | None = None
    # Source files a publisher withdrew on purpose (WIJK_WITHDRAWN_FILES, comma-separated, each as gate 1
    # names it: the path in the data folder, or the file name). A reload of a release year that no longer
    # delivers a file its live rows came from is refused unless the file is declared here (gate 1's
    # ``files_of_live_partition_delivered``): a file that disappears silently would take its rows along.
    withdrawn_files: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self):
        if self.duckdb_path is not None and Path(self.duckdb_path).stem.lower() in WAREHOUSE_SCHEMAS:
            raise ValueError(
                f"database file {self.duckdb_path}: DuckDB names the database after the file ("
                f"{Path(self.duckdb_path).stem!r}), which clashes with the warehouse schema of that name, so "
                f"every '{Path(self.duckdb_path).stem}.<table>' would be ambiguous; choose another file name "
                f"(not one of {', '.join(sorted(WAREHOUSE_SCHEMAS))}), e.g. wijk_assets.duckdb")

    @property
    def mode(self) -> str:
        """``live`` when a CBS OData base URL is configured, otherwise ``offline`` (a data folder)."""
        return "live" if self.cbs_base_url else "offline"


def load_settings() -> Settings:
    data_dir = _env_path("WIJK_DATA_DIR", DEFAULT_DATA_DIR if DEFAULT_DATA_DIR.is_dir() else None)
    duckdb_path = _env_path("WIJK_DUCKDB_PATH", DEFAULT_DUCKDB_PATH)
    base_url = os.environ.get("WIJK_CBS_BASE_URL", "").strip() or None
    gemeente = os.environ.get("WIJK_GEMEENTE", DEFAULT_GEMEENTE).strip().upper()
    opt_in = tuple(
        s.strip() for s in os.environ.get("WIJK_SENSITIVE_OPT_IN", "").split(",") if s.strip()
    )
    return Settings(
        data_dir=data_dir,
        duckdb_path=duckdb_path,
        cbs_base_url=base_url.rstrip("/") if base_url else None,
        gemeente=gemeente,
        min_inhabitants=int(os.environ.get("WIJK_MIN_INHABITANTS", "50")),
        min_respondents=int(os.environ.get("WIJK_MIN_RESPONDENTS", "10")),
        sensitive_opt_in=opt_in,
        release_sensor_interval_seconds=int(os.environ.get("WIJK_RELEASE_SENSOR_INTERVAL_SECONDS", "") or 3600),
        ml_n_jobs=_positive_int("WIJK_ML_N_JOBS", max(1, min(2, os.cpu_count() or 1))),
        ml_workers=_positive_int("WIJK_ML_WORKERS", max(1, min(2, os.cpu_count() or 1))),
        dbt_target_path=Path(os.environ.get("WIJK_DBT_TARGET_PATH", "").strip() or "target"),
        dagster_home=_env_path("DAGSTER_HOME", None),
        withdrawn_files=tuple(
            s.strip() for s in os.environ.get("WIJK_WITHDRAWN_FILES", "").split(",") if s.strip()
        ),
    )


def _positive_int(name: str, default: int) -> int:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{name}={text!r}: expected a whole number >= 1") from None
    if value < 1:
        raise ValueError(f"{name}={text!r}: expected a whole number >= 1")
    return value


def process_environment() -> dict[str, str]:
    """A copy of this process's environment (to be put back with :func:`set_process_environment`)."""
    return dict(os.environ)


def set_process_environment(env: dict[str, str]) -> None:
    """Make this process's environment equal to ``env`` key by key, never empty in between: dbt run in this
    process (``defs.dbt.in_process``) reads its settings from the environment dagster-dbt prepared."""
    for key, value in env.items():
        if os.environ.get(key) != value:
            os.environ[key] = value
    for key in [k for k in os.environ if k not in env]:
        del os.environ[key]
