"""``wijk-assets status`` lists stale assets with their cause (SYNTHETIC two-asset graphs). Dagster's stale
cause carries an asset key *and partition* (``AssetKeyPartitionKey``): reading it as a plain asset key
crashed the command whenever anything was stale, e.g. after every KWB release that retrains no model."""

from __future__ import annotations

import dagster as dg

from wijk_assets.runner.status import stale_assets, status_lines

VERSION = {"up": "1"}
PARTS = dg.StaticPartitionsDefinition(["lbm", "fys"])


@dg.asset(key=["staging", "up"])
def up():
    return dg.Output(1, data_version=dg.DataVersion(VERSION["up"]))


@dg.asset(key=["marts", "down"], deps=[up])
def down():
    return None


@dg.asset(key=["models", "up_p"], partitions_def=PARTS)
def up_p(context):
    return dg.Output(1, data_version=dg.DataVersion(VERSION["up"]))


@dg.asset(key=["explanations", "down_p"], partitions_def=PARTS, deps=[up_p])
def down_p():
    return None


def test_a_stale_asset_is_listed_with_its_upstream_cause_unpartitioned_and_partitioned():
    instance = dg.DagsterInstance.ephemeral()
    defs = dg.Definitions(assets=[up, down, up_p, down_p])
    VERSION["up"] = "1"
    assert dg.materialize([up, down], instance=instance).success
    for partition in ("lbm", "fys"):
        assert dg.materialize([up_p, down_p], instance=instance, partition_key=partition).success
    assert stale_assets(defs, instance) == []

    VERSION["up"] = "2"  # new upstream data, downstream not rebuilt
    assert dg.materialize([up], instance=instance).success
    assert dg.materialize([up_p], instance=instance, partition_key="fys").success
    states = {(s.key, s.partition): s for s in stale_assets(defs, instance)}
    assert set(states) == {("marts/down", None), ("explanations/down_p", "fys")}
    assert all(s.status == "stale" for s in states.values())
    assert states[("marts/down", None)].cause.startswith("staging/up: ")
    assert states[("explanations/down_p", "fys")].cause.startswith("models/up_p [fys]: ")
    assert not any(s.code_change for s in states.values())  # new data: `refresh`'s work
    assert not any("the code changed" in line for line in status_lines([], list(states.values())))


def test_an_asset_stale_from_a_code_change_gets_a_to_do_refresh_cannot_do():
    """After an upgrade that gives an asset another dependency or code version, Dagster calls it stale,
    but no new data arrived, so the automation (and `refresh`) never runs it: status says what to do."""
    instance = dg.DagsterInstance.ephemeral()
    VERSION["up"] = "1"
    assert dg.materialize([up, down], instance=instance).success

    @dg.asset(key=["marts", "down"], deps=[up], code_version="2")  # the next version of the code
    def down_v2():
        return None

    @dg.asset(key=["marts", "down"])  # the same asset without its dependency
    def down_without_dep():
        return None

    for changed, cause in ((down_v2, "has a new code version"), (down_without_dep, "removed dependency on staging/up")):
        states = stale_assets(dg.Definitions(assets=[up, changed]), instance)
        assert [(s.key, s.code_change) for s in states] == [("marts/down", True)], states
        assert cause in states[0].cause
        lines = status_lines([], states)
        assert any(line.strip().startswith("to do:") and "wijk-assets materialize" in line for line in lines), lines
