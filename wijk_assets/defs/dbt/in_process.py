"""dbt in this process, for the dbt steps of a full build (``wijk-assets materialize``) and a refresh.

dagster-dbt runs every dbt command as a subprocess and reads its JSON log lines from the process's
stdout. A national build has two dbt steps, and each subprocess spent ~2.5 s before dbt did any work
(a Python interpreter importing dbt, its adapter and the project), on the build's critical path: the
training mart's step took 6.9 s as a subprocess and 4.4 s as a second invocation in one process.

Inside :func:`dbt_in_this_process` (which ``runner.materialize.materialize_all`` holds around its runs,
and ``wijk-assets refresh`` around each of its runs),
:class:`~wijk_assets.defs.dbt.project.WijkDbtCliResource` hands dagster-dbt an :class:`InProcessDbt`
where it would start the subprocess. It is the same command, shaped as the ``subprocess.Popen`` dagster-dbt
reads: dbt's programmatic entry point (``dbtRunner``) runs the same arguments with the same
environment (dagster-dbt's ``DBT_*`` variables: JSON log format, the invocation's own target and log
folder, the project folder; the profiles folder the subprocess found in its working directory), in a
thread; its console log, which dbt writes to a capture stream instead of stdout (``capture_stdout_logs``,
dbt's own hook), becomes the lines dagster-dbt parses, at the level and in the format the subprocess prints. dagster-dbt then makes
the same Dagster events from them, checks the exit code (0 success, 1 failed nodes, 2 dbt raised) and
reads ``run_results.json`` from the same target folder.

What differs from the subprocess, and how it is handled:

* dbt-duckdb keeps its DuckDB database open after an invocation (a class-level environment). It is
  closed when the invocation ends, so the warehouse file is free again for this process's own
  connections (other settings: dbt's memory limit) and for other processes, as when the subprocess exits.
* The environment is the process's: it is set for the invocation and put back after it (the build's own
  threads do not read it while dbt runs: the step waits for dbt's lines). The working directory is left
  alone: what the subprocess resolved against it (the project folder), relative target, log and profiles
  folders, is made absolute for dbt.
* An interrupt cannot be forwarded to a thread: the step waits for dbt to finish, then stops (its
  relations are then restored as after any failed build).
* Anything else (Dagster's UI and daemon, ``materialize_keys`` on its own, the tests' ``dg.materialize``)
  still runs dbt as a subprocess.
"""

from __future__ import annotations

import contextlib
import os
import queue
import subprocess
import threading
import traceback
import types
from collections.abc import Iterator, Mapping, Sequence

from wijk_assets.settings import process_environment, set_process_environment

_ACTIVE: list[bool] = []
# dbt's folder settings in the environment dagster-dbt prepares
_RELATIVE_TO_WORKING_DIRECTORY = ("DBT_TARGET_PATH", "DBT_LOG_PATH", "DBT_PROFILES_DIR", "DBT_PROJECT_DIR")
# Invocations run one at a time: the environment and dbt's capture stream are the process's.
_ONE_AT_A_TIME = threading.Lock()


@contextlib.contextmanager
def dbt_in_this_process() -> Iterator[None]:
    """dbt commands started in the block (by this process's runs) run in this process."""
    _ACTIVE.append(True)
    try:
        yield
    finally:
        _ACTIVE.pop()


def active() -> bool:
    return bool(_ACTIVE)


@contextlib.contextmanager
def popen_in_process() -> Iterator[None]:
    """dagster-dbt's ``subprocess.Popen`` of a dbt command made an :class:`InProcessDbt` in the block."""
    from dagster_dbt.core import dbt_cli_invocation

    original = dbt_cli_invocation.subprocess
    dbt_cli_invocation.subprocess = types.SimpleNamespace(
        Popen=InProcessDbt, PIPE=subprocess.PIPE, STDOUT=subprocess.STDOUT
    )
    try:
        yield
    finally:
        dbt_cli_invocation.subprocess = original


class _Lines:
    """The invocation's stdout: dbt's console logger writes text to it, dagster-dbt reads byte lines."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._partial = ""
        self.closed = False

    # dbt's side (a text stream for logging.StreamHandler)
    def write(self, text: str) -> int:
        *lines, self._partial = (self._partial + text).split("\n")
        for line in lines:
            self._queue.put(line.encode("utf-8") + b"\n")
        return len(text)

    def flush(self) -> None:
        pass

    def end(self) -> None:
        if self._partial:
            self._queue.put(self._partial.encode("utf-8") + b"\n")
            self._partial = ""
        self._queue.put(None)

    # dagster-dbt's side (``with process.stdout: for raw_line in process.stdout``)
    def __iter__(self) -> Iterator[bytes]:
        while (line := self._queue.get()) is not None:
            yield line

    def __enter__(self) -> _Lines:
        return self

    def __exit__(self, *exc) -> None:
        self.closed = True

    def close(self) -> None:
        self.closed = True


class InProcessDbt:
    """One dbt command (``args[0]`` is the dbt executable, the rest its arguments) run by ``dbtRunner`` in
    a thread of this process, with the ``subprocess.Popen`` interface dagster-dbt uses."""

    def __init__(self, args: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: str | None = None,
                 stdout=None, stderr=None) -> None:  # noqa: ARG002 - stdout/stderr: always the pipe dagster-dbt asks for
        self.args = list(args)
        self.pid = os.getpid()
        self.returncode: int | None = None
        self._interrupted = False
        self.stdout = _Lines()
        self._thread = threading.Thread(target=self._run, args=(dict(env or process_environment()), cwd),
                                        name="wijk-dbt", daemon=True)
        self._thread.start()

    def _run(self, env: dict[str, str], cwd: str | None) -> None:
        from dbt.cli.main import dbtRunner
        from dbt_common.events.functions import capture_stdout_logs, stop_capture_stdout_logs

        code = 2
        if cwd:
            # What the subprocess resolved against its working directory (the project folder), said here
            # instead of changing this process's directory: relative target and log folders (a parse gets
            # the project's "target"), and the default profiles folder, which is the working directory
            # when that holds a profiles.yml.
            for key in _RELATIVE_TO_WORKING_DIRECTORY:
                if env.get(key) and not os.path.isabs(env[key]):
                    env[key] = os.path.join(cwd, env[key])
            if "DBT_PROFILES_DIR" not in env and os.path.exists(os.path.join(cwd, "profiles.yml")):
                env["DBT_PROFILES_DIR"] = cwd
        with _ONE_AT_A_TIME:
            saved_env = process_environment()
            try:
                set_process_environment(env)
                capture_stdout_logs(self.stdout)
                result = dbtRunner().invoke(self.args[1:])
                code = 0 if result.success else (2 if result.exception is not None else 1)
                if result.exception is not None:
                    # what the dbt command prints when it raises (dagster-dbt shows a non-JSON line as is)
                    self.stdout.write(f"Encountered an error:\n{result.exception}\n")
            except BaseException:  # noqa: BLE001 - reported as the command's failure, as a crashed subprocess
                self.stdout.write(traceback.format_exc())
            finally:
                stop_capture_stdout_logs()
                _close_duckdb_environment()
                set_process_environment(saved_env)
                self.returncode = code
                self.stdout.end()

    def poll(self) -> int | None:
        return None if self._thread.is_alive() else self.returncode

    def wait(self, timeout: float | None = None) -> int:
        self._thread.join(None if self._interrupted else timeout)
        if self._thread.is_alive():
            raise subprocess.TimeoutExpired(self.args, timeout)
        return self.returncode if self.returncode is not None else 2

    def send_signal(self, sig) -> None:  # noqa: ARG002 - see the module docstring
        """A thread cannot be interrupted: the command runs to its end, and :meth:`wait` waits for it (the
        step's clean-up must not restore relations while dbt still writes them)."""
        self._interrupted = True

    def terminate(self) -> None:
        pass

    def kill(self) -> None:
        pass


def _close_duckdb_environment() -> None:
    """Close the DuckDB database dbt-duckdb keeps open after an invocation (see the module docstring)."""
    try:
        from dbt.adapters.duckdb.connections import DuckDBConnectionManager
    except ImportError:  # another adapter: nothing of ours is held open
        return
    environment = DuckDBConnectionManager._ENV
    if environment is not None:
        with contextlib.suppress(Exception):
            environment.close()
    DuckDBConnectionManager.close_all_connections()


__all__ = ["InProcessDbt", "active", "dbt_in_this_process", "popen_in_process"]
