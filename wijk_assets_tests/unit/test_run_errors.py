"""The one-line error the CLI prints for a failed run names the reader's own error, not Dagster's wrapper.

SYNTHETIC: a one-asset job whose op raises the error a reader raises on a truncated file.
"""

from __future__ import annotations

import dagster as dg

from wijk_assets.lib.sources.base import SourceFormatError
from wijk_assets.runner.status import _run_error

ERROR = SourceFormatError("cbs_kwb/kwb_2024.json", "a complete UTF-8 JSON document",
                          "JSONDecodeError: Unterminated string starting at: line 18675 column 3 (char 448641)")


@dg.asset
def truncated_source() -> None:
    try:
        raise ValueError("Unterminated string")
    except ValueError as error:  # as the readers do: the parser's error is the cause
        raise ERROR from error


@dg.asset
def refused_source() -> None:
    raise dg.Failure(description="raw.x release year 2024 refused by gate 1: 3 rows without area code")


def test_a_reader_error_raised_in_an_op_is_reported_by_its_own_message():
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize([truncated_source], instance=instance, raise_on_error=False)
    assert not result.success
    reported = _run_error(instance, result.run_id)
    assert reported == f"SourceFormatError: {ERROR}"
    assert "cbs_kwb/kwb_2024.json" in reported and "line 18675 column 3" in reported


def test_a_dagster_failure_is_reported_by_its_description():
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize([refused_source], instance=instance, raise_on_error=False)
    assert _run_error(instance, result.run_id) == "raw.x release year 2024 refused by gate 1: 3 rows without area code"
