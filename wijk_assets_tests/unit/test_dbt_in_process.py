"""The shape of a dbt command run in this process (``wijk_assets.defs.dbt.in_process``), with a stand-in
for dbt's runner (SYNTHETIC: no project, no warehouse). The real thing, on real data, is
``integration/test_dbt_in_process.py``."""

from __future__ import annotations

import os
import types

import pytest

from wijk_assets.defs.dbt import in_process


class _Runner:
    """Stands in for ``dbtRunner``: logs through dbt's capture stream, as dbt's console logger does."""

    outcome: tuple[bool, BaseException | None] = (True, None)
    seen: dict = {}
    gate = None  # a threading.Event the command waits for, when set by a test

    def __init__(self, *args, **kwargs):
        pass

    def invoke(self, args):
        from dbt_common.events.functions import get_capture_stream

        stream = get_capture_stream()
        _Runner.seen = {"args": list(args), "env": os.environ.get("DBT_LOG_FORMAT"),
                        "profiles": os.environ.get("DBT_PROFILES_DIR"), "target": os.environ.get("DBT_TARGET_PATH"),
                        "logs": os.environ.get("DBT_LOG_PATH")}
        stream.write('{"info": {"level": "info", "msg": "Running with dbt"}, "data": {}}\n')
        stream.write('{"info": {"level": "info", ')  # a line written in two pieces
        stream.write('"msg": "Done."}, "data": {}}\n')
        if _Runner.gate is not None:
            _Runner.gate.wait(30)
        success, exception = _Runner.outcome
        if isinstance(exception, KeyboardInterrupt):
            raise exception
        return types.SimpleNamespace(success=success, exception=exception)


@pytest.fixture
def runner(monkeypatch):
    import dbt.cli.main

    monkeypatch.setattr(dbt.cli.main, "dbtRunner", _Runner)
    monkeypatch.setattr(_Runner, "gate", None)
    monkeypatch.setattr(_Runner, "outcome", (True, None))
    return _Runner


@pytest.mark.parametrize(("outcome", "code"), [((True, None), 0), ((False, None), 1),
                                                 ((False, RuntimeError("no profile")), 2)])
def test_a_command_reads_like_the_subprocess_dagster_dbt_started(runner, tmp_path, outcome, code):
    runner.outcome = outcome
    before_env, before_cwd = dict(os.environ), os.getcwd()
    env = {k: v for k, v in os.environ.items() if k != "DBT_PROFILES_DIR"} | {
        "DBT_LOG_FORMAT": "json", "DBT_TARGET_PATH": "target", "DBT_LOG_PATH": "/abs/logs"}
    (tmp_path / "profiles.yml").write_text("{}\n")  # the project folder's profile, as dbt_project/ has

    process = in_process.InProcessDbt(["/venv/bin/dbt", "build", "--select", "x"], env=env, cwd=str(tmp_path))
    with process.stdout:
        lines = list(process.stdout)

    assert process.wait() == code and process.returncode == code
    assert lines[:2] == [b'{"info": {"level": "info", "msg": "Running with dbt"}, "data": {}}\n',
                         b'{"info": {"level": "info", "msg": "Done."}, "data": {}}\n']
    if code == 2:
        assert lines[2:] == [b"Encountered an error:\n", b"no profile\n"]
    else:
        assert lines[2:] == []
    # the command saw dagster-dbt's environment, with what the subprocess resolved against its working
    # directory (the project folder) made absolute; this process has its own environment back
    assert runner.seen == {"args": ["build", "--select", "x"], "env": "json", "profiles": str(tmp_path),
                           "target": str(tmp_path / "target"), "logs": "/abs/logs"}
    assert dict(os.environ) == before_env and os.getcwd() == before_cwd
    assert process.stdout.closed


def test_a_crash_inside_dbt_ends_the_command_with_its_traceback(runner, tmp_path):
    runner.outcome = (False, KeyboardInterrupt())
    process = in_process.InProcessDbt(["dbt", "parse"], env=dict(os.environ), cwd=str(tmp_path))
    lines = b"".join(process.stdout).decode()
    assert process.wait() == 2
    assert "KeyboardInterrupt" in lines


def test_only_a_full_build_runs_dbt_in_this_process():
    from dagster_dbt.core import dbt_cli_invocation

    assert not in_process.active()
    with in_process.dbt_in_this_process():
        assert in_process.active()
        with in_process.popen_in_process():
            assert dbt_cli_invocation.subprocess.Popen is in_process.InProcessDbt
    assert not in_process.active()
    assert dbt_cli_invocation.subprocess.Popen.__module__ == "subprocess"


def test_an_interrupted_command_is_waited_for_to_its_end(runner, tmp_path):
    """dagster-dbt forwards an interrupt and waits a while; a thread cannot be stopped, so the wait lasts
    until dbt is done (the step's clean-up must not run beside a dbt still writing)."""
    import subprocess
    import threading

    runner.gate = threading.Event()
    process = in_process.InProcessDbt(["dbt", "build"], env=dict(os.environ), cwd=str(tmp_path))
    with pytest.raises(subprocess.TimeoutExpired):
        process.wait(timeout=0.01)  # not interrupted: an ordinary wait with a timeout
    process.send_signal(2)
    threading.Timer(0.2, runner.gate.set).start()
    assert process.wait(timeout=0.01) == 0
    assert list(process.stdout)[-1].endswith(b"\n")
