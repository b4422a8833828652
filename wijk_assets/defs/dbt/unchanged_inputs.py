"""The training step does not rebuild the training mart when nothing it reads has changed.

A release that adds no training row (a KWB year after the last Leefbaarometer outcome year, a corrected
value in a year no outcome uses) rebuilds the feature table. Before, the training step then rebuilt
``intermediate.int_wijk_training_cells`` (2.8 M rows) and ``marts.mart_wijk_training`` to the same content,
about 15 s of such a refresh. The step now first takes a fingerprint of what those two models read:

* **code:** the project file (its vars), every macro, the schema files (the tests), the singular tests,
  the two models' SQL, the dbt and DuckDB versions, and the sensitive-feature opt-in (a macro reads it);
* **data**, by content (row order and float noise do not count, see :mod:`wijk_assets.lib.content_version`):

  - ``intermediate.int_lbm_feature_years`` (which source year feeds which outcome year), all rows;
  - ``marts.feature_catalog``: the columns the models read (feature, source, sensitive, concept), all
    rows (its statistics change with every release and are not read);
  - ``marts.fct_liveability_outcomes``, all rows;
  - ``marts.fct_area_features``: its columns (the models use the features that are columns there);
  - ``marts.fct_area_feature_values``: the values of the (source, year) pairs ``int_lbm_feature_years``
    chooses, the only ones the models read;
  - ``intermediate.int_area_names``: the Leefbaarometer names and the code lists of the chosen source-years.

When the fingerprint equals the one recorded at the build that is live (``audit.build_inputs``), and the
live mart still holds what it held then (a ``dbt build`` run outside Dagster would change it), the step
does not run dbt. Both assets are materialised with metadata read from the live tables. The mart's
data version is its content version, as after a build, so it is unchanged and nothing downstream
retrains. The dbt tests report the result they had on these same tables in the recorded run: every
test of this project has severity ``error``, so a build that went live passed all of them. Anything
else builds as before: a different fingerprint, no record, a partial selection, a set-aside relation,
or a selected test the record does not hold.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata

import dagster as dg

from wijk_assets.defs.resources import WarehouseResource
from wijk_assets.lib import build_swap
from wijk_assets.lib.build_swap import Relation
from wijk_assets.lib.content_version import canonical_value_sql, content_version, table_columns
from wijk_assets.lib.warehouse import ensure_table, table_exists
from wijk_assets.settings import DBT_PROJECT_DIR

BUILD_INPUTS_TABLE = "audit.build_inputs"
BUILD_INPUTS_COLUMNS = {
    "step": "VARCHAR",  # the dbt step (op) name
    "fingerprint": "VARCHAR",  # of the code and data the step's models read (training_inputs_fingerprint)
    "mart_version": "VARCHAR",  # content version of the mart that build put live
    "passed_checks": "VARCHAR",  # JSON list of "<asset key>:<check name>" that passed in that build
    "run_id": "VARCHAR",
    "recorded_at": "TIMESTAMP",
}
MART = Relation("marts", "mart_wijk_training")
CELLS = Relation("intermediate", "int_wijk_training_cells")
# The columns of marts.feature_catalog the two models read (int_wijk_training_cells' ``catalog``; the mart
# reads none): its statistics change with every release. unit/test_unchanged_inputs.py keeps this in step
# with the SQL.
CATALOG_COLUMNS_READ = ("feature", "source", "sensitive", "concept")
CODE_PATTERNS = ("dbt_project.yml", "macros/**/*.sql", "models/**/schema.yml", "tests/**/*.sql",
                 "models/intermediate/int_wijk_training_cells.sql", "models/marts/mart_wijk_training.sql")


def _code_digest() -> str:
    digest = hashlib.sha256()
    for pattern in CODE_PATTERNS:
        for path in sorted(DBT_PROJECT_DIR.glob(pattern)):
            if path.is_file():
                digest.update(path.relative_to(DBT_PROJECT_DIR).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    for package in ("dbt-core", "dbt-duckdb", "duckdb"):
        digest.update(f"{package}={metadata.version(package)}\0".encode())
    return digest.hexdigest()


def _sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _values_digest(con, chosen: str) -> str:
    """Count and sum of row hashes of the feature values of the chosen source-years, as the models read
    them (``marts.fct_area_feature_values``, a view over the 5 M staged cells). A sum, not a sorted list:
    the row order does not count and a changed, added or removed row changes it; 0.1 s where sorting the
    row hashes took 5 s. Values are rounded as in content versions (float noise does not count)."""
    rows, total = con.execute(
        f"SELECT count(*), sum(hash(area_code, area_level, year, feature, source, "
        f"{canonical_value_sql('value', 'DOUBLE')})::HUGEINT) FROM (SELECT area_code, area_level, year, feature, "
        f"source, CAST(value AS DOUBLE) AS value FROM marts.fct_area_feature_values "
        f"WHERE value IS NOT NULL AND ({chosen}))"
    ).fetchone()
    return f"{rows}-{total}"


def training_inputs_fingerprint(con, opt_in: Sequence[str]) -> str:
    """Fingerprint of everything the training step's two models read (see the module docstring)."""
    pairs = con.execute(
        "SELECT DISTINCT source, source_year FROM intermediate.int_lbm_feature_years "
        "WHERE source IS NOT NULL AND source_year IS NOT NULL ORDER BY 1, 2"
    ).fetchall()
    chosen = " OR ".join(f"(source = {_sql_text(str(s))} AND year = {int(y)})" for s, y in pairs) or "false"
    parts = [
        f"code {_code_digest()}",
        "opt_in " + ",".join(sorted(str(o).strip() for o in opt_in if str(o).strip())),
        "choices " + content_version(con, "intermediate", "int_lbm_feature_years"),
        "catalog " + content_version(con, "marts", "feature_catalog", only=CATALOG_COLUMNS_READ),
        "outcomes " + content_version(con, "marts", "fct_liveability_outcomes"),
        "feature columns " + ";".join(f"{c}:{t}" for c, t in table_columns(con, "marts", "fct_area_features")),
        "feature values " + _values_digest(con, chosen),
        "names " + content_version(con, "intermediate", "int_area_names",
                                   where=f"source = 'leefbaarometer' OR {chosen}"),
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


@dataclass(frozen=True)
class LiveBuild:
    fingerprint: str
    mart_version: str
    passed_checks: frozenset[str]
    run_id: str


def check_id(asset_key: dg.AssetKey, check_name: str) -> str:
    return f"{asset_key.to_user_string()}:{check_name}"


def recorded(con, step: str) -> LiveBuild | None:
    if not table_exists(con, BUILD_INPUTS_TABLE):
        return None
    row = con.execute(
        f"SELECT fingerprint, mart_version, passed_checks, run_id FROM {BUILD_INPUTS_TABLE} WHERE step = ?", [step]
    ).fetchone()
    return LiveBuild(row[0], row[1], frozenset(json.loads(row[2])), row[3]) if row else None


def record(duckdb: WarehouseResource, step: str, live: LiveBuild | None) -> None:
    """Record the build that just went live (``None``: forget the record, e.g. after a partial build)."""
    with duckdb.connect() as con:
        ensure_table(con, BUILD_INPUTS_TABLE, BUILD_INPUTS_COLUMNS)
        con.execute("BEGIN TRANSACTION")
        con.execute(f"DELETE FROM {BUILD_INPUTS_TABLE} WHERE step = ?", [step])
        if live is not None:
            con.execute(
                f"INSERT INTO {BUILD_INPUTS_TABLE} VALUES (?, ?, ?, ?, ?, ?)",
                [step, live.fingerprint, live.mart_version, json.dumps(sorted(live.passed_checks)), live.run_id,
                 datetime.now(timezone.utc).replace(tzinfo=None)],
            )
        con.execute("COMMIT")


def passed_check(event) -> str | None:
    """``<asset key>:<check name>`` of a passed dbt test in dagster-dbt's event stream, else None."""
    if isinstance(event, (dg.AssetCheckResult, dg.AssetCheckEvaluation)) and event.passed:
        if event.asset_key is not None and event.check_name:
            return check_id(event.asset_key, event.check_name)
    return None


def unchanged_build(context: dg.AssetExecutionContext, duckdb: WarehouseResource, fingerprint: str) -> LiveBuild | None:
    """The live build when this step may leave it in place (see the module docstring), else None."""
    if set(context.selected_asset_keys) != set(context.assets_def.keys):
        return None
    with duckdb.connect(read_only=True) as con:
        live = recorded(con, context.op_def.name)
        if live is None or live.fingerprint != fingerprint:
            return None
        if build_swap.set_aside_now(con) or any(build_swap.kind_of(con, r) is None for r in (MART, CELLS)):
            return None
        if content_version(con, MART.schema, MART.name) != live.mart_version:
            return None
    selected = {check_id(k.asset_key, k.name) for k in context.selected_asset_check_keys}
    return live if selected <= live.passed_checks else None


def outputs_of_live_build(context: dg.AssetExecutionContext, live: LiveBuild, fingerprint: str) -> Iterable[dg.Output]:
    """One output per asset of the step, standing for the live (not rebuilt) relation."""
    note = (f"not rebuilt: everything this model reads is unchanged since the build of run {live.run_id} "
            f"(inputs fingerprint {fingerprint[:16]}); the table is that build's")
    for key in sorted(context.selected_asset_keys, key=lambda k: k.to_user_string()):
        yield dg.Output(value=None, output_name=context.assets_def.get_output_name_for_asset_key(key),
                        metadata={"dbt": note, "built_in_run": live.run_id, "inputs_fingerprint": fingerprint})


def carried_check_results(context: dg.AssetExecutionContext, live: LiveBuild) -> Iterator[dg.AssetCheckResult]:
    for key in sorted(context.selected_asset_check_keys, key=lambda k: check_id(k.asset_key, k.name)):
        yield dg.AssetCheckResult(
            asset_key=key.asset_key, check_name=key.name, passed=True,
            metadata={"evaluated_in_run": live.run_id,
                      "note": "not run again: the table was not rebuilt, and this test passed on it in that run"},
        )
