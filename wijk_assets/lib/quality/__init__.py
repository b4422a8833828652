"""Data quality gates run with Great Expectations (GX Core 1.x, driven directly - dagster-ge does not
support GE 1.x).

- :mod:`wijk_assets.lib.quality.ge_runner` - pure functions: load our JSON suites, build GE suites, prepare
  raw long rows, validate a pandas frame and summarise the result (no Dagster);
- :mod:`wijk_assets.defs.raw.checks` - gate 1: a blocking Dagster asset check per raw table
  (``raw_gate_check`` / ``raw_gate_checks``);
- :mod:`wijk_assets.lib.quality.feature_gate` - gate 2 machinery for the wide feature table (coverage, NULL
  ratios, year-on-year distribution shift);
- ``suites/*.json`` - the expectation suites, one per raw table.

Nothing here imports Great Expectations at import time (it costs seconds); ``ge_runner`` imports it on
first use.
"""
