"""``wijk-assets``: the command a data engineer runs outside the UI (argument parsing only).

``wijk-assets materialize`` registers the release-year partitions the sources offer and materialises
every asset (raw partitions one year at a time, then everything downstream) in this process, against
the persistent Dagster instance in ``$DAGSTER_HOME`` so the runs show up in ``dagster dev`` afterwards.
The engine is :mod:`wijk_assets.runner`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from wijk_assets.runner.materialize import ensure_dagster_home, materialize_all
from wijk_assets.settings import load_settings


def print_status(settings, *, stale: bool) -> int:
    """:func:`wijk_assets.runner.status.print_status`, imported when used: it imports Dagster (~1 s), and
    this module is also what the build's worker process imports again as its main module (spawn)."""
    from wijk_assets.runner.status import print_status as print_status_of

    return print_status_of(settings, stale=stale)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="wijk-assets", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    mat = sub.add_parser("materialize", help="materialise every asset on the configured data")
    mat.add_argument("--raw-only", action="store_true", help="only the raw source partitions")
    mat.add_argument("--source", action="append", help="limit raw loading to this source (repeatable)")
    sub.add_parser(
        "refresh",
        help="load new or changed source releases, then rebuild what depends on them (the sensors' work, "
        "without a daemon)",
    )
    tune = sub.add_parser(
        "tune",
        help="run the model selection (grouped CV over features, training rows and settings) again, "
        "then retrain what it changed; a refresh never does this unless the training data changed beyond the rule",
    )
    tune.add_argument("--outcome", action="append", help="only this outcome (repeatable; default: all)")
    tune.add_argument("--nested", action="store_true",
                      help="score the choice by nested grouped CV (three times the fits) instead of BBC-CV")
    sub.add_parser("partitions", help="list the release years each source offers")
    sub.add_parser(
        "status",
        help="show stuck raw partitions (a refused or unreadable file: file, reason, what to do) and stale assets",
    )
    lineage = sub.add_parser(
        "lineage",
        help="write the auditor's lineage report (asset graph, code/data versions, check history) as Markdown",
    )
    lineage.add_argument("--out", default="-", help="output file (default: standard output)")
    lineage.add_argument("--history", type=int, default=5, help="materialisations listed per asset")
    args = parser.parse_args(argv)

    settings = load_settings()
    print(
        f"wijk-assets: mode={settings.mode} data_dir={settings.data_dir} "
        f"duckdb={settings.duckdb_path} gemeente={settings.gemeente}"
    )
    if args.command == "partitions":
        from wijk_assets.definitions import build_resources

        cbs = build_resources(settings)["cbs"]
        from wijk_assets.defs.raw.assets import RAW_SOURCES

        for source in RAW_SOURCES:
            print(f"{source}: {', '.join(str(y) for y in cbs.available_years(source))}")
        return 0
    if args.command == "lineage":
        import dagster as dg

        from wijk_assets.definitions import build_definitions
        from wijk_assets.defs.reports.audit import lineage_report_markdown

        ensure_dagster_home()
        report = lineage_report_markdown(
            build_definitions(settings), dg.DagsterInstance.get(), history=args.history
        )
        if args.out == "-":
            print(report)
        else:
            Path(args.out).write_text(report, encoding="utf-8")
            print(f"wijk-assets: lineage report written to {args.out}")
        return 0
    if args.command == "status":
        return 1 if print_status(settings, stale=True) else 0
    if args.command == "refresh":
        from wijk_assets.runner.refresh import refresh

        report = refresh(settings)
        changed = sorted(report.materialised())
        stuck = print_status(settings, stale=False)
        ok = report.success and not stuck
        print(f"wijk-assets: refresh {'done' if ok else 'FAILED (see above)'}; "
              f"{len(report.runs)} runs, {len(changed)} assets updated; database: {settings.duckdb_path}")
        return 0 if ok else 1
    if args.command == "tune":
        from wijk_assets.runner.tune import tune as run_tune

        ok = run_tune(settings, args.outcome, nested=args.nested) and not print_status(settings, stale=False)
        print(f"wijk-assets: tune {'done' if ok else 'FAILED (see above)'}; database: {settings.duckdb_path}")
        return 0 if ok else 1
    if args.command == "materialize":
        report = materialize_all(settings, sources=args.source, downstream=not args.raw_only)
        for line in report.withheld:
            print(f"wijk-assets: WITHHELD (gate 3, not published): {line}")
        for line in report.blocked:
            print(f"wijk-assets: BLOCKED by a quality gate (not published): {line}")
        stuck = print_status(settings, stale=False)
        done = (
            "all assets materialised"
            if not (report.blocked or report.withheld)
            else "materialised; see WITHHELD/BLOCKED lines"
        )
        ok = report.success and not stuck
        print(f"wijk-assets: {done if ok else 'FAILED (see above)'}; database: {settings.duckdb_path}")
        return 0 if ok else 1
    return 2


if __name__ == "__main__":
    sys.exit(main())
