"""One full materialisation in a process of its own: the benchmark's line (b).

``run_bench.py`` starts this as a subprocess and samples its process tree: a municipality's build is a
process of its own (``wijk-assets materialize``), not one that already ran another national build. (Run
in the benchmark's process after (a), line (b) started on ~300-400 MB that (a) left in the process's heap:
its raw step at 1,746 MiB of which 1,729 the process, against 1,519 in (a).)

Usage (by run_bench.py): python bench/one_build.py --db DB --home DAGSTER_HOME --data-dir DIR
                                                   --outcomes lbm,fys,... --json OUT
Prints the run engine's progress lines; writes the step timings, the outcome and Dagster's measured share
(bench/overhead.py) to OUT.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH))

from overhead import DagsterOverhead  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True)
    parser.add_argument("--home", required=True, help="the Dagster home (run_bench.new_instance wrote its dagster.yaml)")
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--outcomes", required=True)
    parser.add_argument("--json", required=True)
    args = parser.parse_args()

    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import dagster as dg

    from run_bench import ALL_OUTCOMES, limit_outcomes

    outcomes = [o for o in args.outcomes.split(",") if o]
    if set(outcomes) != set(ALL_OUTCOMES):
        limit_outcomes(outcomes)  # before anything imports the outcome partitions
    from wijk_assets.runner.materialize import materialize_all
    from wijk_assets.settings import load_settings

    settings = replace(load_settings(), data_dir=Path(args.data_dir), duckdb_path=Path(args.db), cbs_base_url=None)
    instance = dg.DagsterInstance.local_temp(args.home)
    start = time.perf_counter()
    with DagsterOverhead(instance) as overhead:
        report = materialize_all(settings, instance=instance, log=lambda m: print(f"  {m}", flush=True))
    seconds = time.perf_counter() - start
    Path(args.json).write_text(json.dumps({
        "seconds": seconds,
        "success": report.success,
        "blocked": report.blocked,
        "timings": [asdict(t) for t in report.timings],
        "overhead": overhead.summary(),
    }), encoding="utf-8")
    return 0 if report.success else 1


if __name__ == "__main__":
    sys.exit(main())
