"""A downstream run that failed with an error is retried once; a refusal and a skipped step are not
(SYNTHETIC assets on an ephemeral instance; the real ``refresh`` is tested in
``integration/test_failure_isolation.py``).

Shape: a raw stand-in, a mart that reads it, a model per outcome that reads the mart, a report after
the models. ``MODE`` makes a step fail the way a worker that ran out of memory does (an exception), or
refuse on purpose (``dg.Failure``, as a dbt build refused by its tests does).
"""

from __future__ import annotations

import dagster as dg
import pytest

from wijk_assets.defs.automation.conditions import downstream_automation_condition
from wijk_assets.runner.refresh import RefreshReport, follow_automation, retry_failed_runs
from wijk_assets.runner.retry import failed_with_error

OUTCOMES = dg.StaticPartitionsDefinition(["a", "b"])
RAW, MART, MODEL, REPORT = (dg.AssetKey(k) for k in (["raw", "toy"], ["marts", "toy"], ["models", "toy"], ["reports", "toy"]))


def _defs(state: dict) -> dg.Definitions:
    cond = downstream_automation_condition()

    def maybe_fail(step: str) -> None:
        if state["mode"] == f"error:{step}":
            raise MemoryError(f"synthetic: {step} ran out of memory")
        if state["mode"] == f"refuse:{step}":
            raise dg.Failure(f"synthetic: {step} refused by its checks")

    @dg.asset(key=RAW, code_version="r1")
    def raw():
        return dg.Output(None, data_version=dg.DataVersion(state["raw"]))

    @dg.asset(key=MART, deps=[raw], code_version="m1", automation_condition=cond)
    def mart():
        maybe_fail("mart")
        return dg.Output(None, data_version=dg.DataVersion(state["raw"]))

    @dg.asset(key=MODEL, deps=[mart], partitions_def=OUTCOMES, code_version="x1", automation_condition=cond)
    def model(context):
        maybe_fail(f"model[{context.partition_key}]")
        return dg.Output(None, data_version=dg.DataVersion(f"{state['raw']}-{context.partition_key}"))

    @dg.asset(key=REPORT, deps=[mart], code_version="p1", automation_condition=cond)
    def report():
        return None

    return dg.Definitions(assets=[raw, mart, model, report])


@pytest.fixture
def world():
    state = {"raw": "v1", "mode": "ok"}
    defs = _defs(state)
    instance = dg.DagsterInstance.ephemeral()
    assets = list(defs.assets)
    assert dg.materialize(assets, selection=[RAW, MART, REPORT], instance=instance).success
    for outcome in ("a", "b"):
        assert dg.materialize(assets, selection=[MODEL], partition_key=outcome, instance=instance).success
    cursor = follow_automation(defs, instance, log=lambda _: None).automation_cursor  # baseline

    def release(version: str, mode: str):
        """A new raw version lands and is followed while ``mode`` makes a step fail."""
        nonlocal cursor
        state.update(raw=version, mode=mode)
        assert dg.materialize(assets, selection=[RAW], instance=instance).success
        followed = follow_automation(defs, instance, cursor=cursor, log=lambda _: None)
        cursor = followed.automation_cursor
        return followed

    def retry(failed_before, mode: str = "ok"):
        nonlocal cursor
        state["mode"] = mode
        report = RefreshReport(automation_cursor=cursor)
        retry_failed_runs(defs, instance, set(failed_before), report, log=lambda _: None)
        cursor = report.automation_cursor
        return [(r.trigger.split(" ")[0], r.asset_keys, r.partition_key, r.success) for r in report.runs]

    graph = defs.resolve_asset_graph()
    yield {"release": release, "retry": retry, "failed": lambda: failed_with_error(instance, graph, {RAW})}
    instance.dispose()


def test_an_error_in_an_unpartitioned_step_is_retried_and_what_follows_it_runs(world):
    followed = world["release"]("v2", "error:mart")
    assert not followed.success
    failed = world["failed"]()
    # the mart failed with an error; the report and the models, skipped after it, have no error of their own
    assert [(a.key, a.partition) for a in failed] == [(MART, None)]
    assert "ran out of memory" in failed[0].error
    # what `wijk-assets status` prints for it
    assert failed[0].block().startswith(f"FAILED marts/toy - error in run {failed[0].run_id[:8]}: MemoryError: synthetic")
    runs = world["retry"](failed)
    assert runs[0] == ("retry", ["marts/toy"], None, True)
    assert sorted(runs[1:]) == [("automation", ["models/toy"], "a", True), ("automation", ["models/toy"], "b", True),
                                ("automation", ["reports/toy"], None, True)]
    assert world["failed"]() == []
    assert world["retry"](failed) == []  # the failed attempt is no longer the latest: nothing to do


def test_an_error_in_one_partition_retries_that_partition_only(world):
    world["release"]("v2", "error:model[b]")
    failed = world["failed"]()
    assert [(a.key, a.partition) for a in failed] == [(MODEL, "b")]
    assert world["retry"](failed, mode="error:model[b]") == [("retry", ["models/toy"], "b", False)]  # once, no loop
    assert world["retry"](world["failed"]()) == [("retry", ["models/toy"], "b", True)]


def test_a_refusal_is_not_retried(world):
    followed = world["release"]("v2", "refuse:mart")
    assert not followed.success
    assert world["failed"]() == []
