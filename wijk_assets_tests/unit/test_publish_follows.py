"""The published tables and the release monitoring follow new feature values once, and a retraining
once (synthetic assets).

The shape of the real graph around ``publish/area_explanations`` and ``monitoring/release_changes``: a
feature-values table and a training mart (unpartitioned, versioned by content), models and explanations
per outcome, a published table that reads the explanations, the feature values and the training mart,
and a monitoring table that reads the feature values, the training mart and the models. A release that
retrains nothing must reach both without re-running the explanations, and leave nothing stale; a release
that retrains must reach each once, after the new models (not once on the feature values and again after
the models).
"""

from __future__ import annotations

import dagster as dg

from wijk_assets.defs.automation.conditions import downstream_automation_condition
from wijk_assets.runner.refresh import follow_automation
from wijk_assets.runner.status import stale_assets

OUTCOMES = dg.StaticPartitionsDefinition(["a", "b"])
VALUES, TRAINING = dg.AssetKey(["marts", "toy_values"]), dg.AssetKey(["marts", "toy_training"])
DRIVERS = dg.AssetKey(["explanations", "toy_drivers"])
# as publish/area_explanations declares it
PUBLISH_CONDITION = {"triggered_by": [DRIVERS], "may_be_missing": [DRIVERS], "triggered_after_update_by": [VALUES],
                     "waits_for_retraining_on": [TRAINING]}
MODEL = dg.AssetKey(["models", "toy"])
# as monitoring/release_changes declares it (CHANGES_CONDITION; unit/test_definitions.py compares the two)
MONITORING_CONDITION = {"triggered_by": [MODEL], "triggered_after_update_by": [VALUES],
                        "waits_for_retraining_on": [TRAINING]}
# the real explanations' dependencies: the model and the training mart, not the feature table
DRIVERS_DEPS = "model_and_training"


def _graph(content: dict, publish_condition: dict, drivers_deps: str = DRIVERS_DEPS):
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

    @dg.asset(key=MODEL, deps=[training_key], partitions_def=OUTCOMES, code_version="x1",
              automation_condition=cond)
    def model(context):
        return dg.Output(None, data_version=dg.DataVersion(f"{content['training']}-{context.partition_key}"))

    @dg.asset(key=DRIVERS, deps=[model, training_key if drivers_deps == DRIVERS_DEPS else values_key],
              partitions_def=OUTCOMES,
              code_version="e1", automation_condition=downstream_automation_condition(triggered_by=[model.key]))
    def drivers():
        return None

    publish_cond = downstream_automation_condition(**publish_condition)

    @dg.asset(key=["publish", "toy"], deps=[drivers, values_key, training_key], code_version="p1",
              automation_condition=publish_cond)
    def publish():
        return None

    @dg.asset(key=["monitoring", "toy"], deps=[values_key, training_key, model], code_version="c1",
              automation_condition=downstream_automation_condition(**MONITORING_CONDITION))
    def monitoring():
        return None

    assets = [raw, marts, model, drivers, publish, monitoring]
    return dg.Definitions(assets=assets), assets


def _built(content: dict, publish_condition: dict, drivers_deps: str):
    defs, everything = _graph(content, publish_condition, drivers_deps)
    raw, marts, model, drivers, publish, monitoring = everything
    instance = dg.DagsterInstance.ephemeral()
    assert dg.materialize(everything, selection=[raw.key, *marts.keys], instance=instance).success
    for outcome in ("a", "b"):
        assert dg.materialize(everything, selection=[model.key, drivers.key], partition_key=outcome,
                              instance=instance).success
    assert dg.materialize(everything, selection=[publish.key, monitoring.key], instance=instance).success
    baseline = follow_automation(defs, instance, log=lambda _: None)
    assert baseline.runs == []
    return defs, instance, baseline.automation_cursor, raw


def _release(content: dict, publish_condition: dict = PUBLISH_CONDITION, drivers_deps: str = DRIVERS_DEPS, **new):
    defs, instance, cursor, raw = _built(content, publish_condition, drivers_deps)
    content.update(new)
    assert dg.materialize([raw], instance=instance).success  # the new release lands
    followed = follow_automation(defs, instance, cursor=cursor, log=lambda _: None)
    assert followed.success
    followed.stale = [(s.key, s.partition) for s in stale_assets(defs, instance)]
    return followed


def test_new_feature_values_without_retraining_reach_the_published_table_not_the_explanations():
    followed = _release({"raw": "1", "values": "v1", "training": "t1"}, raw="2", values="v2")
    assert followed.materialised() == {"marts/toy_values": [None], "marts/toy_training": [None],
                                       "publish/toy": [None], "monitoring/toy": [None]}
    # and what `wijk-assets status` reports afterwards: nothing left stale that no refresh would run
    assert followed.stale == []


def test_explanations_depending_on_the_feature_values_would_stay_stale_after_such_a_release():
    """The control: the explanations' former dependency on the feature table made them stale after every
    release without training rows, while their automation (rightly) never ran them."""
    followed = _release({"raw": "1", "values": "v1", "training": "t1"}, drivers_deps="values", raw="2", values="v2")
    assert "explanations/toy_drivers" not in followed.materialised()
    assert sorted(followed.stale) == [("explanations/toy_drivers", "a"), ("explanations/toy_drivers", "b")]


def test_a_release_that_retrains_publishes_once_after_the_new_explanations():
    followed = _release({"raw": "1", "values": "v1", "training": "t1"}, raw="2", values="v2", training="t2")
    done = followed.materialised()
    assert done["publish/toy"] == [None]  # once
    assert sorted(done["explanations/toy_drivers"]) == ["a", "b"]
    # In a later tick than the explanations: the runs of one tick are launched together (the daemon runs
    # them concurrently), so a publish requested with the models could read the old explanations.
    tick = {key: int(run.trigger.split()[-1]) for run in followed.runs for key in run.asset_keys}
    assert tick["publish/toy"] > tick["explanations/toy_drivers"] == tick["models/toy"]
    # the release monitoring: once, after the new models
    assert done["monitoring/toy"] == [None]
    assert tick["monitoring/toy"] > tick["models/toy"]
    assert followed.stale == []


def test_without_waiting_for_retraining_the_published_table_would_run_twice():
    """The control: triggered by new feature values as directly as by the explanations, it runs on the
    feature values while the models are about to retrain, and again after their explanations."""
    eager = {"triggered_by": [DRIVERS, VALUES], "may_be_missing": [DRIVERS]}
    followed = _release({"raw": "1", "values": "v1", "training": "t1"}, eager, raw="2", values="v2", training="t2")
    assert followed.materialised()["publish/toy"] == [None, None]
