"""The published tables follow new feature values once, and a retraining once (synthetic assets).

The shape of the real graph around ``publish/area_explanations``: a feature-values table and a training
mart (unpartitioned, versioned by content), models and explanations per outcome, and a published table
that reads the explanations, the feature values and the training mart. A release that retrains nothing
must reach the published table without re-running the explanations; a release that retrains must reach
it once, after the new explanations (not once on the feature values and again after the explanations).
"""

from __future__ import annotations

import dagster as dg

from wijk_assets.defs.automation.conditions import downstream_automation_condition
from wijk_assets.runner.refresh import follow_automation

OUTCOMES = dg.StaticPartitionsDefinition(["a", "b"])
VALUES, TRAINING = dg.AssetKey(["marts", "toy_values"]), dg.AssetKey(["marts", "toy_training"])
DRIVERS = dg.AssetKey(["explanations", "toy_drivers"])
# as publish/area_explanations declares it
PUBLISH_CONDITION = {"triggered_by": [DRIVERS], "may_be_missing": [DRIVERS], "triggered_after_update_by": [VALUES],
                     "waits_for_retraining_on": [TRAINING]}


def _graph(content: dict, publish_condition: dict):
    values_key, training_key = VALUES, TRAINING
    cond = downstream_automation_condition()

    @dg.asset(key=["raw", "toy"], code_version="r1")
    def raw():
        return dg.Output(None, data_version=dg.DataVersion(content["raw"]))

    # one dbt-like step builds both marts, each versioned by its own content
    @dg.multi_asset(specs=[dg.AssetSpec(values_key, deps=[raw], automation_condition=cond),
                           dg.AssetSpec(training_key, deps=[raw], automation_condition=cond)], code_version="m1")
    def marts():
        yield dg.MaterializeResult(asset_key=values_key, data_version=dg.DataVersion(content["values"]))
        yield dg.MaterializeResult(asset_key=training_key, data_version=dg.DataVersion(content["training"]))

    @dg.asset(key=["models", "toy"], deps=[training_key], partitions_def=OUTCOMES, code_version="x1",
              automation_condition=cond)
    def model(context):
        return dg.Output(None, data_version=dg.DataVersion(f"{content['training']}-{context.partition_key}"))

    @dg.asset(key=DRIVERS, deps=[model, values_key], partitions_def=OUTCOMES,
              code_version="e1", automation_condition=downstream_automation_condition(triggered_by=[model.key]))
    def drivers():
        return None

    publish_cond = downstream_automation_condition(**publish_condition)

    @dg.asset(key=["publish", "toy"], deps=[drivers, values_key, training_key], code_version="p1",
              automation_condition=publish_cond)
    def publish():
        return None

    return dg.Definitions(assets=[raw, marts, model, drivers, publish]), (raw, marts, model, drivers, publish)


def _built(content: dict, publish_condition: dict):
    defs, (raw, marts, model, drivers, publish) = _graph(content, publish_condition)
    instance = dg.DagsterInstance.ephemeral()
    everything = [raw, marts, model, drivers, publish]
    assert dg.materialize(everything, selection=[raw.key, *marts.keys], instance=instance).success
    for outcome in ("a", "b"):
        assert dg.materialize(everything, selection=[model.key, drivers.key], partition_key=outcome,
                              instance=instance).success
    assert dg.materialize(everything, selection=[publish.key], instance=instance).success
    baseline = follow_automation(defs, instance, log=lambda _: None)
    assert baseline.runs == []
    return defs, instance, baseline.automation_cursor, raw


def _release(content: dict, publish_condition: dict = PUBLISH_CONDITION, **new):
    defs, instance, cursor, raw = _built(content, publish_condition)
    content.update(new)
    assert dg.materialize([raw], instance=instance).success  # the new release lands
    followed = follow_automation(defs, instance, cursor=cursor, log=lambda _: None)
    assert followed.success
    return followed


def test_new_feature_values_without_retraining_reach_the_published_table_not_the_explanations():
    followed = _release({"raw": "1", "values": "v1", "training": "t1"}, raw="2", values="v2")
    assert followed.materialised() == {"marts/toy_values": [None], "marts/toy_training": [None],
                                       "publish/toy": [None]}


def test_a_release_that_retrains_publishes_once_after_the_new_explanations():
    followed = _release({"raw": "1", "values": "v1", "training": "t1"}, raw="2", values="v2", training="t2")
    done = followed.materialised()
    assert done["publish/toy"] == [None]  # once
    assert sorted(done["explanations/toy_drivers"]) == ["a", "b"]
    # In a later tick than the explanations: the runs of one tick are launched together (the daemon runs
    # them concurrently), so a publish requested with the models could read the old explanations.
    tick = {key: int(run.trigger.split()[-1]) for run in followed.runs for key in run.asset_keys}
    assert tick["publish/toy"] > tick["explanations/toy_drivers"] == tick["models/toy"]


def test_without_waiting_for_retraining_the_published_table_would_run_twice():
    """The control: triggered by new feature values as directly as by the explanations, it runs on the
    feature values while the models are about to retrain, and again after their explanations."""
    eager = {"triggered_by": [DRIVERS, VALUES], "may_be_missing": [DRIVERS]}
    followed = _release({"raw": "1", "values": "v1", "training": "t1"}, eager, raw="2", values="v2", training="t2")
    assert followed.materialised()["publish/toy"] == [None, None]
