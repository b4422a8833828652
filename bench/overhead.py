"""Where a line's time goes outside the steps: the Dagster instance's event storage and the automation
evaluations (measured, not inferred from "wall time minus steps").

Every run writes events to the instance (run start, one ``STEP_OUTPUT`` per output and per check result,
each planned and each stored materialisation and check evaluation, logs ...). With the default SQLite
storage each event opens its own database connection, and asset events are written twice (the run's
shard and the cross-run index), so an event costs milliseconds, not microseconds. A refresh also
evaluates the assets' automation conditions once per tick, plus a baseline evaluation first and a final
one that requests nothing. Both are part of what a municipality's refresh costs; neither is our step
code.

Timing only: the wrappers call the wrapped function unchanged and are removed on exit.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass


@dataclass
class Tally:
    calls: int = 0
    seconds: float = 0.0

    def describe(self, what: str) -> str:
        each = f", {self.seconds / self.calls * 1000:.1f} ms each" if self.calls else ""
        return f"{self.seconds:.1f} s for {self.calls} {what}{each}"


class DagsterOverhead:
    """Context manager: times ``instance.event_log_storage.store_event`` and the refresh runner's
    ``evaluate_automation`` while it is open (this process only; runs execute in process)."""

    def __init__(self, instance):
        self.instance = instance
        self.events = Tally()
        self.evaluations = Tally()
        self._undo: list = []

    def __enter__(self) -> DagsterOverhead:
        from wijk_assets.runner import refresh as refresh_module

        storage = self.instance.event_log_storage
        self._wrap_attribute(storage, "store_event", self.events, on_instance=True)
        self._wrap_attribute(refresh_module, "evaluate_automation", self.evaluations, on_instance=False)
        return self

    def __exit__(self, *exc) -> None:
        for undo in reversed(self._undo):
            undo()
        self._undo.clear()

    def _wrap_attribute(self, owner, name: str, tally: Tally, *, on_instance: bool) -> None:
        original = getattr(owner, name)

        @functools.wraps(original)
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                tally.calls += 1
                tally.seconds += time.perf_counter() - start

        had_own = on_instance and name in vars(owner)
        setattr(owner, name, timed)
        if on_instance and not had_own:
            self._undo.append(lambda: delattr(owner, name))  # the class's method again
        else:
            self._undo.append(lambda: setattr(owner, name, original))

    def summary(self) -> str:
        parts = [f"event storage {self.events.describe('events')}"]
        if self.evaluations.calls:
            parts.append(f"automation evaluations {self.evaluations.describe('evaluations')}")
        return "; ".join(parts)
