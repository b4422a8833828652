"""dbt's partial-parse state for a new warehouse file: a full build parses it beside the raw stage, and the
first dbt step waits for that parse instead of parsing again (wijk_assets/defs/dbt/project.py).

Runs the real ``dbt parse`` of this project (no source data is read)."""

from __future__ import annotations

import shutil

import pytest

from wijk_assets.defs.dbt import project

KEPT = ("manifest.json", "partial_parse.msgpack", project.PARSED_FOR_FILE)


@pytest.fixture
def parse_calls(tmp_path, monkeypatch):
    """Counts the parses started; puts the project target's parse state back afterwards, so the next
    test's dbt steps do not parse again for their own warehouse file."""
    target = project.dbt_project.manifest_path.parent
    saved = tmp_path / "saved_target"
    saved.mkdir()
    for name in KEPT:
        if (target / name).exists():
            shutil.copy2(target / name, saved / name)
    monkeypatch.setenv("WIJK_DUCKDB_PATH", "unset")  # the parses set it; put back as it was afterwards
    calls: list[str] = []
    real = project._start_parse
    monkeypatch.setattr(project, "_start_parse", lambda path: calls.append(path) or real(path))
    yield calls
    project.finish_parse_state()
    for name in KEPT:
        if (saved / name).exists():
            shutil.copy2(saved / name, target / name)


def test_the_background_parse_is_the_one_the_dbt_step_uses(tmp_path, parse_calls):
    warehouse = str((tmp_path / "elsewhere.duckdb").resolve())
    marker = project.dbt_project.manifest_path.with_name(project.PARSED_FOR_FILE)
    assert not marker.exists() or marker.read_text(encoding="utf-8") != warehouse

    assert project.start_parse_state(warehouse) is True
    pending = list(project._pending)
    assert [path for path, _ in pending] == [warehouse]
    assert project.start_parse_state(warehouse) is False  # one background parse at a time

    project.prepare_parse_state(warehouse)  # what the dbt steps call first (assets._point_dbt_at)
    assert parse_calls == [warehouse], "the dbt step parsed again instead of using the background parse"
    assert pending[0][1].process.returncode == 0
    assert marker.read_text(encoding="utf-8") == warehouse
    assert not project._pending

    # made for this file now: neither a new background parse nor one before the next dbt step
    assert project.start_parse_state(warehouse) is False
    project.prepare_parse_state(warehouse)
    assert parse_calls == [warehouse]


def test_a_dbt_step_for_another_warehouse_file_parses_for_that_one(tmp_path, parse_calls):
    first = str((tmp_path / "first.duckdb").resolve())
    second = str((tmp_path / "second.duckdb").resolve())
    assert project.start_parse_state(first) is True
    project.prepare_parse_state(second)
    assert parse_calls == [first, second]
    marker = project.dbt_project.manifest_path.with_name(project.PARSED_FOR_FILE)
    assert marker.read_text(encoding="utf-8") == second


class _FailedParse:
    """A dbt parse that failed (SYNTHETIC: no dbt is run)."""

    def wait(self):
        raise RuntimeError("dbt parse failed: Compilation Error in model x")


def test_a_failed_background_parse_is_logged_and_hides_no_error_of_the_build(tmp_path, monkeypatch):
    monkeypatch.setattr(project, "_start_parse", lambda path: _FailedParse())
    monkeypatch.setattr(project, "_pending", [])
    lines: list[str] = []
    warehouse = tmp_path / "w.duckdb"
    with pytest.raises(ValueError, match="the build's own error"):
        with project.parse_state_in_background(warehouse, log=lines.append):
            raise ValueError("the build's own error")
    assert len(lines) == 1 and "dbt parse for" in lines[0] and "Compilation Error in model x" in lines[0]
    assert project._pending == []
    # a build that stopped before dbt: the failure is logged when the build ends, nothing raised
    with project.parse_state_in_background(warehouse, log=lines.append):
        pass
    assert len(lines) == 2
