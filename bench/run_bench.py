"""Benchmark: the pipeline against the bare-compute reference, in one run on the same machine.

Usage:  python bench/run_bench.py [--only bare,full,reuse,incremental,nochange,nochange_cli] [--outcomes lbm,fys]
                                  [--data-dir ../shared/data] [--keep] [--skip-shap-check]

Lines (each in wall seconds and as a ratio to the bare reference measured in the same run):
  bare         bench/bare_reference.py in a subprocess: read every file, build the wide wijk-year table,
               per outcome grouped 5-fold LightGBM + ridge + final fit + pred_contrib (no Dagster/dbt/GE)
  full   (a)   every asset materialised into a fresh DuckDB file (``runner.materialize.materialize_all``,
               the README main command's code path), with a per-step and per-stage breakdown
  reuse  (b)   the same into another fresh DuckDB file that holds only the model selection stored by (a)
               (``ml.model_selection``): the selection asset keeps it, so no selection CV runs and every
               model trains exactly the stored choice; in a process of its own (bench/one_build.py), as a
               municipality's build runs
  incremental (c)  after (a): a relabelled copy of the real KWB 2023 file appears as KWB 2025 (newer than
               the last Leefbaarometer outcome year, 2022, so it adds no training row) in the data folder
               (symlinks to the real files); time ``runner.refresh.refresh``
  nochange (d) ``refresh`` again with nothing changed
  nochange_cli (d') the same as the command a municipality schedules: ``wijk-assets refresh`` in a new
               process (interpreter start and imports included; (c) and (d) run in this process, whose
               imports (a) already paid)
They run in the order bare, (a), (c), (d), (b), bare again: the refreshes follow (a) on its warehouse,
as a municipality's refresh follows its last build; (b), on a warehouse of its own, comes after them (the
summary lists the lines in the order above). The bare reference runs once more at the end: on a shared
(virtual) machine the speed drifts during a run of ~20 minutes (two runs of this benchmark measured the
reference at 88 s and 79 s, and the pipeline the other way round), so the ratios use the mean of the two
reference runs, and the summary shows how far apart they were and each line's ratio to either alone.
Dagster instances keep their storage on disk in the benchmark folder, configured as the README command
configures a new home (its dagster.yaml). Peak memory is the largest SUM of the resident memory of a
run's process and all its descendants (dbt subprocesses, fit workers; each process's proportional set
size, PSS: a page shared by several processes counts once), sampled every 0.2 s (bench/rss.py), per line and per
step (the steps with the highest peaks are listed); the summary's overall figure is the largest line
peak. The run's process is this one for (a), (c) and (d), and a process of its own for the bare
reference, (b) and (d'). Dagster's own share of (a),
(b), (c) and (d) is measured too: the seconds its event storage took and for how many events, and the
seconds of the refresh's automation evaluations (bench/overhead.py). Figures are printed, never
asserted: timing belongs in a report, not in a test.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from datetime import datetime, timezone
from collections import defaultdict
from dataclasses import dataclass, replace
from types import SimpleNamespace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(BENCH))

from overhead import DagsterOverhead  # noqa: E402
from rss import MIB, TreeRssSampler  # noqa: E402

PHASES = ("bare", "full", "reuse", "incremental", "nochange", "nochange_cli")
ORDER = (*PHASES, "bare_end")  # the summary's order; bare_end: the reference again, after the other lines
ALL_OUTCOMES = ("lbm", "fys", "onv", "soc", "vrz", "won")  # checked against lib.ml.training.OUTCOMES below
# The "release that adds no training row": the real KWB 2023 file (one gemeente) relabelled as 2025 (the
# shared data already holds the national KWB 2024; a second 2024 file for Utrecht would duplicate it).
KWB_REAL = "cbs_kwb_xlsx_utrecht/kwb-2023_gm0344_utrecht.xlsx"
KWB_NEW_YEAR = 2025
# Issue 14's "done when" figures, printed beside the measurements (never asserted).
TARGETS = {"full": "<= 150 s and <= 2.5x bare", "reuse": "<= 150 s and <= 2.5x bare", "incremental": "<= 30 s",
           "nochange": "<= 15 s", "nochange_cli": "<= 15 s"}
PEAK_TARGET = "<= 2048 MiB"


@dataclass
class Line:
    name: str
    label: str
    seconds: float | None = None
    peak_bytes: int | None = None
    note: str = ""
    ok: bool = True
    overhead: str = ""  # Dagster event storage and automation evaluations, measured (bench/overhead.py)


# ----------------------------------------------------------------------------------------- helpers


def _stage(label: str) -> str:
    """Stage of a step, from its step key (checks first: their keys start with their asset's key)."""
    if label.startswith(("raw/", "raw__")):
        return "raw (incl. gate 1)"
    if "gate" in label or "check" in label or "no_judgemental" in label or "shift_since" in label:
        return "gates 2-3 + publish guard"
    if label.startswith("dbt"):
        return "dbt"
    if label.startswith("models__"):
        return "models"
    if label.startswith("explanations"):
        return "explanations"
    return "monitoring, publish, reports"


def new_instance(home: Path):
    """A Dagster instance in ``home`` configured as ``wijk-assets`` configures a new home (its
    ``dagster.yaml``), so the benchmark measures the README command's event storage."""
    import dagster as dg

    from wijk_assets.runner.materialize import instance_yaml

    home.mkdir(parents=True)
    (home / "dagster.yaml").write_text(instance_yaml(home), encoding="utf-8")
    return dg.DagsterInstance.local_temp(str(home))


def link_data_folder(source: Path, target: Path) -> None:
    """A data folder of symlinks to the real files (as the end-to-end test builds it), so the bench can
    add a file without touching the shared folder."""
    for path in sorted(source.rglob("*")):
        if path.is_file():
            link = target / path.relative_to(source)
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(path)


def relabel_kwb(real: Path, target: Path, old_year: int, new_year: int) -> None:
    """Copy a kwb-YYYY.xlsx with its sheet renamed to kwb-<new_year> (the reader requires the sheet name
    to match the year in the file name); every cell stays byte for byte as in the real file."""
    old, new = f"kwb-{old_year}".encode(), f"kwb-{new_year}".encode()
    renamed = 0
    with zipfile.ZipFile(real) as src, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename in ("xl/workbook.xml", "docProps/app.xml") and old in data:
                data = data.replace(old, new)
                renamed += 1
            dst.writestr(info, data)
    if renamed == 0:
        raise SystemExit(f"{real}: no sheet named kwb-{old_year} in xl/workbook.xml; cannot relabel it")


def limit_outcomes(outcomes: list[str]) -> None:
    """Development scope only: build the Dagster definitions with the given outcome partitions.

    Must run before any module that imports ``outcome_partitions`` from ``wijk_assets.keys``; the
    figures are then not comparable with the issue's targets (which are for all six outcomes).
    """
    import dagster as dg

    from wijk_assets import keys

    keys.outcome_partitions = dg.StaticPartitionsDefinition(list(outcomes))


def _fmt_seconds(seconds: float | None) -> str:
    return f"{seconds:8.1f}" if seconds is not None else f"{'-':>8}"


# ------------------------------------------------------------------------------------------- phases


def run_bare(data_dir: Path, outcomes: list[str], workdir: Path, again: bool = False) -> tuple[Line, dict | None]:
    out = workdir / ("bare_end.json" if again else "bare.json")
    cmd = [sys.executable, str(BENCH / "bare_reference.py"), "--data-dir", str(data_dir),
           "--outcomes", ",".join(outcomes), "--json", str(out)]
    print(f"\n== bare reference{', again at the end' if again else ''}: {' '.join(cmd[1:])}", flush=True)
    start = time.perf_counter()
    returncode, _, peak, _ = run_own_process(cmd)  # its own process tree, like (b) and (d')
    seconds = time.perf_counter() - start
    label = f"bare reference ({len(outcomes)} outcome{'s' if len(outcomes) > 1 else ''})"
    line = Line("bare_end" if again else "bare", f"{label}, again at the end" if again else label, seconds, peak)
    if returncode != 0 or not out.exists():
        line.ok, line.note = False, f"failed (exit code {returncode})"
        return line, None
    result = json.loads(out.read_text(encoding="utf-8"))
    # The ratio base is the reference's own compute time (its total, without interpreter start-up and
    # imports); the subprocess wall time is noted beside it.
    line.seconds = result["total_seconds"]
    line.note = f"subprocess wall {seconds:.1f} s incl. start-up"
    return line, result


def run_full(settings, instance, sampler: TreeRssSampler) -> tuple[Line, object]:
    from wijk_assets.runner.materialize import materialize_all

    print(f"\n== (a) full materialisation into a fresh DuckDB file: {settings.duckdb_path}", flush=True)
    sampler.reset()
    since = time.time()
    start = time.perf_counter()
    with DagsterOverhead(instance) as overhead:
        report = materialize_all(settings, instance=instance, log=lambda m: print(f"  {m}", flush=True))
    seconds = time.perf_counter() - start
    line = Line("full", "(a) full materialisation, fresh DuckDB", seconds, sampler.peak_bytes, ok=report.success,
                overhead=overhead.summary())
    if report.blocked:
        line.note = f"gate 3 withheld: {', '.join(b.split(':')[0] for b in report.blocked)}"
    if not report.success:
        line.note = "FAILED: " + ", ".join(t.label for t in report.timings if not t.success)[:200]
    print_full_breakdown(report)
    print(f"  outside our code (measured): {line.overhead}")
    print_step_peaks(instance, since, sampler)
    return line, report


def print_full_breakdown(report) -> None:
    stages: dict[str, float] = defaultdict(float)
    print(f"\n{'step':<58} {'partition':>9} {'seconds':>8}  ok")
    for t in report.timings:
        print(f"{t.label:<58} {t.partition or '':>9} {t.seconds:8.2f}  {'yes' if t.success else 'NO'}")
        stages[_stage(t.label)] += t.seconds
    print("\nstage totals (sum of step wall times; the rest of the wall time is Dagster run overhead):")
    for stage, seconds in sorted(stages.items(), key=lambda kv: -kv[1]):
        print(f"  {stage:<28} {seconds:8.2f} s")


def step_windows(instance, since: float) -> list[tuple[str, str | None, float, float]]:
    """(step key, partition, start, end) in epoch seconds of every step of the runs created after ``since``."""
    import dagster as dg

    out = []
    for record in instance.get_run_records(dg.RunsFilter(created_after=datetime.fromtimestamp(since, timezone.utc))):
        run = record.dagster_run
        starts: dict[str, float] = {}
        for entry in instance.all_logs(run.run_id):
            event = entry.dagster_event
            if event is None or event.step_key is None:
                continue
            if event.event_type == dg.DagsterEventType.STEP_START:
                starts[event.step_key] = entry.timestamp
            elif event.event_type in (dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE):
                out.append((event.step_key, run.tags.get("dagster/partition"), starts.get(event.step_key, entry.timestamp),
                            entry.timestamp))
    return sorted(out, key=lambda w: w[2])


def print_step_peaks(instance, since: float, sampler: TreeRssSampler, top: int = 8) -> None:
    """Where the memory peak of a line happens: the steps whose windows saw the largest tree memory (PSS)."""
    peaks = [(*sampler.peak_between(start, end), step, partition, end - start)
             for step, partition, start, end in step_windows(instance, since)]
    peaks = [p for p in peaks if p[0] > 0]
    if not peaks:
        return
    print("\n  steps with the highest tree memory, PSS (sampled during the step; of which the run's own process):")
    for peak, own, step, partition, seconds in sorted(peaks, key=lambda p: -p[0])[:top]:
        print(f"    {peak / MIB:7.0f} MiB ({own / MIB:5.0f})  {step:<56} {partition or '':>9} {seconds:7.1f} s")


def run_reuse(settings, source_db: Path, outcomes: list[str]) -> Line:
    """(b): a fresh DuckDB file holding only (a)'s stored model selection, then every asset, in a process
    of its own (``bench/one_build.py``; a municipality's build does not start in a process that already
    ran one), its process tree sampled."""
    import duckdb

    from wijk_assets.defs.models.store import SELECTION_COLUMNS
    from wijk_assets.runner.materialize import StepTiming

    target = source_db.parent / "reuse" / "bench.duckdb"
    target.parent.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(target)) as con:
        con.execute(f"ATTACH '{source_db}' AS src (READ_ONLY)")
        con.execute("CREATE SCHEMA ml")
        columns = ", ".join(SELECTION_COLUMNS)
        con.execute(f"CREATE TABLE ml.model_selection AS SELECT {columns} FROM src.ml.model_selection")
        stored = con.execute("SELECT count(*) FROM ml.model_selection").fetchone()[0]
    print(f"\n== (b) full materialisation into a fresh DuckDB file with {stored} stored model selections, in a "
          f"new process: {target}", flush=True)
    home = target.parent / "dagster_home"
    reuse_instance = new_instance(home)
    out = target.parent / "one_build.json"
    since = time.time()
    cmd = [sys.executable, str(BENCH / "one_build.py"), "--db", str(target), "--home", str(home),
           "--data-dir", str(settings.data_dir), "--outcomes", ",".join(outcomes), "--json", str(out)]
    returncode, _, peak, child_sampler = run_own_process(cmd)
    line = Line("reuse", "(b) full, models reuse stored selection", peak_bytes=peak, ok=returncode == 0)
    if not out.exists():
        line.ok, line.note = False, f"FAILED: exit code {returncode}, no result"
        return line
    result = json.loads(out.read_text(encoding="utf-8"))
    line.seconds, line.overhead = result["seconds"], result["overhead"]
    timings = [StepTiming(**t) for t in result["timings"]]
    with duckdb.connect(str(target), read_only=True) as con:
        actions = con.execute("SELECT action, count(*) FROM ml.model_selection_log GROUP BY 1 ORDER BY 1").fetchall()
    line.note = "selection: " + ", ".join(f"{n} {a}" for a, n in actions) + "; own process"
    if not result["success"]:
        line.ok = False
        line.note = "FAILED: " + ", ".join(t.label for t in timings if not t.success)[:200]
    print_full_breakdown(SimpleNamespace(timings=timings))
    print(f"  outside our code (measured): {line.overhead}")
    print_step_peaks(reuse_instance, since, child_sampler)
    return line


def run_own_process(cmd: list[str], env: dict | None = None, capture: bool = False
                    ) -> tuple[int, str, int, TreeRssSampler]:
    """Run ``cmd`` as a process of its own and sample ITS process tree (not this one's): (exit code,
    captured stdout, peak tree memory (PSS) in bytes, the sampler with its timeline)."""
    child = subprocess.Popen(cmd, cwd=REPO, env=env, text=True,
                             stdout=subprocess.PIPE if capture else None,
                             stderr=subprocess.PIPE if capture else None)
    with TreeRssSampler(pid=child.pid) as child_sampler:
        stdout, stderr = child.communicate()
    if capture and child.returncode:
        print((stderr or "")[-2000:], flush=True)
    return child.returncode, stdout or "", child_sampler.overall_peak_bytes, child_sampler


def training_state(db: Path) -> dict:
    import duckdb

    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.execute("SELECT count(*) FROM marts.mart_wijk_training").fetchone()[0]
        versions = dict(con.execute("SELECT outcome, model_version FROM ml.model_runs").fetchall())
        kwb_years = [r[0] for r in con.execute("SELECT DISTINCT release_year FROM raw.cbs_kwb ORDER BY 1").fetchall()]
    return {"training_rows": rows, "model_versions": versions, "kwb_years": kwb_years}


def run_refresh(name: str, label: str, settings, instance, sampler: TreeRssSampler) -> Line:
    from wijk_assets.runner.materialize import _step_timings
    from wijk_assets.runner.refresh import refresh

    print(f"\n== {label}", flush=True)
    before = training_state(settings.duckdb_path)
    sampler.reset()
    since = time.time()
    start = time.perf_counter()
    with DagsterOverhead(instance) as overhead:
        report = refresh(settings, instance, log=lambda m: print(f"  {m}", flush=True))
    seconds = time.perf_counter() - start
    line = Line(name, label, seconds, sampler.peak_bytes, ok=report.success, overhead=overhead.summary())
    after = training_state(settings.duckdb_path)
    retrained = sorted(o for o, v in after["model_versions"].items() if before["model_versions"].get(o) != v)
    stages: dict[str, float] = defaultdict(float)
    print(f"\n  {'run':<62} {'partition':>9} {'seconds':>8}")
    for run in report.runs:
        names = ", ".join(run.asset_keys[:2]) + (f" (+{len(run.asset_keys) - 2})" if len(run.asset_keys) > 2 else "")
        print(f"  {(run.trigger + ': ' + names)[:62]:<62} {run.partition_key or '':>9} {run.seconds:8.2f}")
        for step, (step_seconds, _) in _step_timings(instance, run.run_id).items():
            stages[_stage(step)] += step_seconds
    for stage, stage_seconds in sorted(stages.items(), key=lambda kv: -kv[1]):
        print(f"  stage {stage:<28} {stage_seconds:8.2f} s")
    print(f"  outside our code (measured): {line.overhead}")
    print_step_peaks(instance, since, sampler)
    line.note = (f"{len(report.runs)} runs, {report.ticks} automation ticks; training rows "
                 f"{before['training_rows']} -> {after['training_rows']}; models retrained: "
                 f"{', '.join(retrained) if retrained else 'none'}")
    if not report.success:
        line.note = "FAILED; " + line.note
    return line


def run_cli_refresh(label: str, settings, workdir: Path) -> Line:
    """``wijk-assets refresh`` in a new process on the benchmark's warehouse, data folder and instance; the
    peak is that process's tree."""
    print(f"\n== {label}", flush=True)
    env = {k: v for k, v in os.environ.items() if k != "WIJK_CBS_BASE_URL"}
    env.update(WIJK_DATA_DIR=str(settings.data_dir), WIJK_DUCKDB_PATH=str(settings.duckdb_path),
               DAGSTER_HOME=str(workdir / "dagster_home"))
    cli = Path(sys.executable).with_name("wijk-assets")
    start = time.perf_counter()
    returncode, stdout, peak, _ = run_own_process([str(cli), "refresh"], env=env, capture=True)
    seconds = time.perf_counter() - start
    for text in stdout.strip().splitlines()[-4:]:
        print(f"  {text}", flush=True)
    line = Line("nochange_cli", label, seconds, peak, ok=returncode == 0)
    line.note = f"rc={returncode}" if returncode else "interpreter start and imports included"
    return line


def compare_explainers(settings) -> None:
    """pred_contrib vs shap.TreeExplainer on the same model and rows (the lbm model, latest year)."""
    from wijk_assets.defs.explanations.assets import latest_rows
    from wijk_assets.defs.models.gate import load_model_run
    from wijk_assets.defs.models.assets import load_training_frame
    from wijk_assets.defs.resources import WarehouseResource
    from wijk_assets.lib.ml.explain import compare_with_tree_explainer
    from wijk_assets.lib.ml.training import load_artifact

    duckdb = WarehouseResource(path=str(settings.duckdb_path))
    artifact = load_artifact(load_model_run(duckdb, "lbm")["artifact_path"])
    frame, _ = load_training_frame(duckdb)
    rows = latest_rows(frame, "lbm")
    result = compare_with_tree_explainer(artifact.booster, rows[artifact.features])
    print(
        f"\nSHAP on {result['n_rows']} wijken x {result['n_features']} features (lbm model): "
        f"pred_contrib {result['seconds_pred_contrib']:.2f} s, shap.TreeExplainer "
        f"{result['seconds_tree_explainer']:.2f} s, max |difference| {result['max_abs_diff']:.2e}"
    )


def print_quality(bare: dict | None, db: Path) -> None:
    """Grouped-CV R² per outcome: bare reference beside the pipeline's models (ml.model_runs)."""
    import duckdb

    pipeline: dict[str, dict] = {}
    if db.exists():
        with duckdb.connect(str(db), read_only=True) as con:
            runs = con.execute("SELECT outcome, metrics, n_rows, n_features FROM ml.model_runs").fetchall()
            for outcome, metrics, n_rows, n_features in runs:
                cv = json.loads(metrics)["grouped_cv"]
                pipeline[outcome] = {"lightgbm": cv["lightgbm"]["r2"], "ridge": cv["ridge"]["r2"],
                                     "shape": f"{n_rows} x {n_features}"}
    bare_by = {r["outcome"]: r for r in (bare or {}).get("outcomes", [])}
    outcomes = [o for o in ALL_OUTCOMES if o in bare_by or o in pipeline]
    print("\ngrouped-CV R² (5 folds by gemeente; the two sides train on different rows, see bare_reference.py)")
    print(f"  {'outcome':<8} {'bare rows x features':>20} {'lgbm':>7} {'ridge':>7} {'pipeline rows x features':>24} "
          f"{'lgbm':>7} {'ridge':>7}")

    def f(v):
        return f"{v:7.4f}" if v is not None else f"{'-':>7}"

    for o in outcomes:
        b, p = bare_by.get(o, {}), pipeline.get(o, {})
        bare_shape = f"{b['rows']} x {b['features']}" if b else "-"
        print(f"  {o:<8} {bare_shape:>20} {f(b.get('cv_r2_lightgbm'))} {f(b.get('cv_r2_ridge'))} "
              f"{p.get('shape', '-'):>24} {f(p.get('lightgbm'))} {f(p.get('ridge'))}")


def bare_base(lines: list[Line]) -> tuple[float | None, list[float]]:
    """The ratio base: the mean of the reference runs that succeeded (first, and again at the end), and
    those runs' seconds."""
    runs = [line.seconds for line in lines if line.name in ("bare", "bare_end") and line.ok and line.seconds]
    return (sum(runs) / len(runs) if runs else None), runs


def print_summary(lines: list[Line], overall_peak: int, scope: str) -> None:
    base, runs = bare_base(lines)
    print(f"\n== summary ({scope})")
    print(f"{'line':<48} {'seconds':>8} {'x bare':>7} {'peak PSS':>9}  target / note")
    for line in lines:
        ratio = f"{line.seconds / base:7.2f}" if (line.seconds is not None and base) else f"{'-':>7}"
        peak = f"{line.peak_bytes / MIB:6.0f} MiB" if line.peak_bytes is not None else f"{'-':>9}"
        target = TARGETS.get(line.name, "")
        spread = ""
        if len(runs) == 2 and line.seconds is not None and line.name in TARGETS:
            spread = f"x{line.seconds / runs[0]:.2f} vs the first reference run, x{line.seconds / runs[1]:.2f} vs the last"
        note = "; ".join(x for x in (target and f"target {target}", line.note, spread) if x)
        print(f"{line.label:<48} {_fmt_seconds(line.seconds)} {ratio} {peak}  {note}")
    if len(runs) == 2:
        print(f"x bare: against the mean of the two reference runs ({runs[0]:.1f} s first, {runs[1]:.1f} s at the end: "
              f"{(runs[1] - runs[0]) / runs[0]:+.0%}, the machine's drift during this benchmark)")
    print(f"largest peak memory of a line (PSS of its run's process and all descendants, sampled every 0.2 s): "
          f"{overall_peak / MIB:.0f} MiB (target for the full run {PEAK_TARGET})")
    measured = [line for line in lines if line.overhead]
    if measured:
        print("Dagster's own share, measured (bench/overhead.py; events written during a step also count in its step time):")
        for line in measured:
            print(f"  {line.label:<46} {line.overhead}")


# --------------------------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None, help="source folder (default: the project's, ../shared/data)")
    parser.add_argument("--only", default=",".join(PHASES),
                        help=f"comma-separated lines to run, of {', '.join(PHASES)} (incremental and nochange "
                             "run the full materialisation first as their set-up)")
    parser.add_argument("--outcomes", default=",".join(ALL_OUTCOMES),
                        help="development only: limit the models (bare and pipeline) to these outcomes")
    parser.add_argument("--keep", action="store_true", help="keep the benchmark folder (database, models, data links)")
    parser.add_argument("--skip-shap-check", action="store_true", help="skip pred_contrib vs shap.TreeExplainer")
    args = parser.parse_args()

    only = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = sorted(set(only) - set(PHASES))
    if unknown:
        parser.error(f"--only: unknown lines {unknown}; choose from {', '.join(PHASES)}")
    outcomes = [o.strip() for o in args.outcomes.split(",") if o.strip()]
    if sorted(set(outcomes) - set(ALL_OUTCOMES)):
        parser.error(f"--outcomes: choose from {', '.join(ALL_OUTCOMES)}")
    full_scope = set(outcomes) == set(ALL_OUTCOMES)
    scope = "all outcomes" if full_scope else f"DEVELOPMENT SCOPE, outcomes {','.join(outcomes)}: not comparable with the targets"

    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    from wijk_assets.settings import load_settings

    base = load_settings()
    real_data = Path(args.data_dir).resolve() if args.data_dir else base.data_dir
    workdir = Path(tempfile.mkdtemp(prefix="wijk_bench_"))
    data_dir = workdir / "data"
    link_data_folder(real_data, data_dir)
    db = workdir / "bench.duckdb"
    settings = replace(base, data_dir=data_dir, duckdb_path=db, cbs_base_url=None)
    print(f"benchmark: data={real_data} (linked in {data_dir}) db={db} python={sys.version.split()[0]} "
          f"cores={os.cpu_count()} lines={','.join(only)} ({scope})", flush=True)

    lines: list[Line] = []
    bare_result = None
    with TreeRssSampler() as sampler:
        # First, before this process imports Dagster or DuckDB: the reference in its own process.
        if "bare" in only:
            line, bare_result = run_bare(data_dir, outcomes, workdir)
            lines.append(line)
        if not full_scope:
            limit_outcomes(outcomes)
        from wijk_assets.lib.ml.training import OUTCOMES

        assert tuple(OUTCOMES) == ALL_OUTCOMES, f"the pipeline's outcomes changed: {OUTCOMES}"

        # An instance with its storage on disk, as the README command's (DAGSTER_HOME): an ephemeral one
        # keeps every run's events (column lineage, GE evidence) in this process's memory.
        instance = new_instance(workdir / "dagster_home")
        needs_full = any(p in only for p in ("full", "reuse", "incremental", "nochange", "nochange_cli"))
        full_ok = False
        if needs_full:
            line, _ = run_full(settings, instance, sampler)
            if "full" not in only:
                line.note = ("(set-up for the refresh lines) " + line.note).strip()
            lines.append(line)
            full_ok = line.ok
        # (c) and (d) follow (a) on its own warehouse, as a municipality's refresh follows its last build;
        # (b) runs last, on a warehouse of its own: run between them, it would leave the dbt project's
        # partial-parse state made for its file, and (c) would pay a full dbt parse no real refresh pays.
        added: list[Path] = []
        if "incremental" in only:
            if full_ok:
                kwb = data_dir / KWB_REAL
                new = kwb.with_name(kwb.name.replace("kwb-2023", f"kwb-{KWB_NEW_YEAR}"))
                relabel_kwb(kwb.resolve(), new, 2023, KWB_NEW_YEAR)
                added.append(new)
                print(f"\nnew release dropped in: {new.relative_to(data_dir)} (the real 2023 file, relabelled)")
                lines.append(run_refresh("incremental", f"(c) refresh: KWB {KWB_NEW_YEAR}, no training row",
                                         settings, instance, sampler))
            else:
                lines.append(Line("incremental", "(c) refresh: new release", note="skipped: (a) failed", ok=False))
        if "nochange" in only:
            if full_ok:
                lines.append(run_refresh("nochange", "(d) refresh: nothing changed", settings, instance, sampler))
            else:
                lines.append(Line("nochange", "(d) refresh: nothing changed", note="skipped: (a) failed", ok=False))
        if "nochange_cli" in only:
            label = "(d') the same, as `wijk-assets refresh` (new process)"
            lines.append(run_cli_refresh(label, settings, workdir) if full_ok
                         else Line("nochange_cli", label, note="skipped: (a) failed", ok=False))
        for path in added:  # (b) builds from the same files as (a)
            path.unlink()
        if "reuse" in only:
            if full_ok:
                lines.append(run_reuse(settings, db, outcomes))
            else:
                lines.append(Line("reuse", "(b) full, models reuse stored selection", note="skipped: (a) failed",
                                  ok=False))
        # the largest peak of any line, each measured on its own run's process tree
        if "bare" in only and needs_full and lines[0].ok:
            lines.append(run_bare(data_dir, outcomes, workdir, again=True)[0])
        lines.sort(key=lambda line: ORDER.index(line.name))
        overall_peak = max((line.peak_bytes for line in lines if line.peak_bytes is not None), default=0)

    if needs_full or bare_result:
        print_quality(bare_result, db)
    print_summary(lines, overall_peak, scope)
    if needs_full and full_ok and "lbm" in outcomes and not args.skip_shap_check:
        compare_explainers(settings)
    if args.keep:
        print(f"kept: {workdir}")
    else:
        shutil.rmtree(workdir)  # the database, the model artefacts beside it and the data links
    return 0 if all(line.ok for line in lines) else 1


if __name__ == "__main__":
    sys.exit(main())
