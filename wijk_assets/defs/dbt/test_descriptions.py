"""Plain-language descriptions for dbt tests, shown on their Dagster asset checks.

A dbt test's own ``description`` wins; otherwise the description is built from the generic test's
name and arguments (``not_null`` on ``area_code`` -> "area_code is never NULL"), so a data engineer
reading a failed check in the UI knows what was expected without opening the YAML.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def _values(values: Any) -> str:
    items = [str(v) for v in (values or [])]
    return ", ".join(items[:12]) + (" …" if len(items) > 12 else "")


def describe_dbt_test(test: Mapping[str, Any]) -> str:
    """One sentence for a dbt test node from the manifest (``resource_type == 'test'``)."""
    own = (test.get("description") or "").strip()
    if own:
        return own
    meta = test.get("test_metadata") or {}
    name = meta.get("name") or ""
    kwargs = meta.get("kwargs") or {}
    column = kwargs.get("column_name") or test.get("column_name")
    severity = str((test.get("config") or {}).get("severity") or "error").lower()
    blocking = "blocking" if severity == "error" else "warning only"
    if name == "not_null":
        text = f"{column} is never NULL"
    elif name == "unique":
        text = f"{column} is unique (no two rows share a value)"
    elif name == "accepted_values":
        text = f"{column} only takes the values {_values(kwargs.get('values'))}"
    elif name == "relationships":
        target = str(kwargs.get("to", "")).replace("ref(", "").replace(")", "").replace("'", "")
        text = f"every {column} exists as {kwargs.get('field')} in {target}"
    elif name == "unique_combination":
        text = f"one row per combination of {_values(kwargs.get('combination_of_columns'))}"
    elif name == "expression_is_true":
        text = f"holds for every row: {kwargs.get('expression')}"
    elif name == "percentage_between_0_and_100":
        text = f"{column} is a percentage between 0 and 100"
    elif name == "catalog_covers_columns":
        text = "every feature column is documented in the feature catalog (label, unit, source keys)"
    elif name == "no_outcome_columns":
        text = "no Leefbaarometer outcome column is among the features (no target leakage)"
    elif name:
        args = ", ".join(f"{k}={v}" for k, v in kwargs.items() if k != "model" and v is not None)
        text = f"dbt test {name}" + (f" ({args})" if args else "")
    else:  # a singular test: a SQL file that returns the offending rows
        text = f"singular dbt test {test.get('name')}: returns no rows (tests/{test.get('name')}.sql)"
    return f"{text} [dbt test, {blocking}]"
