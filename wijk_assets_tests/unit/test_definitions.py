"""The asset graph's shape: what a reviewer must notice if it changes."""

from __future__ import annotations

import dagster as dg

from wijk_assets.defs.dbt.assets import dbt_feature_models, dbt_training_models
from wijk_assets.definitions import build_definitions

FEATURE_TABLE = dg.AssetKey(["marts", "fct_area_features"])


def _graph():
    return build_definitions().resolve_asset_graph()


def test_every_dbt_model_built_on_the_feature_table_runs_after_its_gate():
    graph = _graph()
    descendants = {
        k for k in graph.get_all_asset_keys()
        if FEATURE_TABLE in graph.get_ancestor_asset_keys(k) and k in set(dbt_feature_models.keys) | set(dbt_training_models.keys)
    }
    assert descendants, "the training mart must be downstream of the feature table"
    assert descendants <= set(dbt_training_models.keys)
    assert FEATURE_TABLE in dbt_feature_models.keys


def test_blocking_gates_guard_each_stage():
    graph = _graph()
    blocking = {(c.asset_key.to_user_string(), c.name) for c in graph.asset_check_keys if graph.get_check_spec(c).blocking}
    for source in ("rivm_gezondheid", "leefbaarometer", "cbs_kwb", "cbs_nabijheid", "cbs_ses_woa", "gemeente_survey"):
        assert (f"raw/{source}", f"ge_gate_{source}") in blocking
    assert ("marts/fct_area_features", "ge_gate_fct_area_features") in blocking
    # gate 3 is an asset (a verdict per outcome) that every consumer of a model depends on directly
    gate = dg.AssetKey(["models", "model_gate_verdict"])
    assert graph.get(gate).partitions_def.get_partition_keys() == ["lbm", "fys", "onv", "soc", "vrz", "won"]
    assert dg.AssetKey(["models", "liveability_model"]) in graph.get(gate).parent_keys
    for consumer in (["explanations", "shap_values"], ["explanations", "area_drivers"],
                     ["explanations", "area_residuals"], ["explanations", "global_importance"],
                     ["publish", "area_explanations"], ["reports", "algorithm_register_entry"],
                     ["reports", "model_card"]):
        assert gate in graph.get(dg.AssetKey(consumer)).parent_keys, consumer
    assert ("publish/area_explanations", "no_judgemental_labels_or_sensitive_columns") in blocking


def test_every_step_that_opens_the_database_shares_the_duckdb_pool():
    defs = build_definitions()
    for assets_def in defs.assets:
        pool = getattr(assets_def.op, "pool", None)
        assert pool == "duckdb", f"{assets_def.op.name} is not in the duckdb pool"
    for check in defs.asset_checks:
        assert getattr(check.op, "pool", None) == "duckdb", f"{check.op.name} is not in the duckdb pool"


def test_lineage_runs_from_raw_to_the_published_tables_and_reports():
    graph = _graph()
    published = graph.get_ancestor_asset_keys(dg.AssetKey(["publish", "area_explanations"]))
    for key in (["raw", "rivm_gezondheid"], ["raw", "leefbaarometer"], ["marts", "fct_area_features"],
                ["models", "liveability_model"], ["explanations", "area_drivers"]):
        assert dg.AssetKey(key) in published
    register = graph.get_ancestor_asset_keys(dg.AssetKey(["reports", "algorithm_register_entry"]))
    assert dg.AssetKey(["publish", "area_explanations"]) in register


def test_every_asset_downstream_of_raw_follows_its_upstream_and_is_versioned():
    """New source data must reach every table without a person starting runs, and every asset must
    carry a code version, so its data version is a hash of code and inputs (never a run id)."""
    graph = _graph()
    raw = {k for k in graph.get_all_asset_keys() if k.path[0] == "raw"}
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        if not node.is_materializable:
            continue
        assert node.code_version, f"{key.to_user_string()} has no code version"
        if key in raw:
            assert node.automation_condition is None  # raw partitions are the release sensor's job
        else:
            assert node.automation_condition is not None, f"{key.to_user_string()} does not follow upstream"
            assert node.automation_condition.get_label() == "wijk_downstream"
    assert {k for k in dbt_feature_models.keys} <= {k for k in graph.get_all_asset_keys() if graph.get(k).automation_condition}


def test_register_lists_exactly_the_sources_the_models_are_built_from():
    from wijk_assets.defs.raw.assets import RAW_SOURCES
    from wijk_assets.defs.reports.assets import MODEL_SOURCES

    graph = _graph()
    model_inputs = graph.get_ancestor_asset_keys(dg.AssetKey(["models", "liveability_model"]))
    used = {s for s in RAW_SOURCES if dg.AssetKey(["raw", s]) in model_inputs}
    assert set(MODEL_SOURCES) == used
    assert "gemeente_survey" in RAW_SOURCES and "gemeente_survey" not in used


def test_a_database_file_named_after_a_schema_is_refused_with_the_reason(tmp_path):
    """raw.duckdb would make DuckDB's catalog 'raw' clash with the raw schema: every load then fails
    with an ambiguity error far from the cause. The settings refuse it up front and say why."""
    import pytest

    from wijk_assets.settings import Settings

    with pytest.raises(ValueError, match=r"raw\.duckdb.*clashes with the warehouse schema"):
        Settings(data_dir=tmp_path, duckdb_path=tmp_path / "raw.duckdb", cbs_base_url=None, gemeente="GM0106")
    Settings(data_dir=tmp_path, duckdb_path=tmp_path / "wijk.duckdb", cbs_base_url=None, gemeente="GM0106")


def test_automation_evaluation_reads_each_dynamic_partition_set_once_and_decides_the_same():
    """Synthetic graph: a dynamically partitioned source year and two eager assets downstream. The
    evaluation that reads each partitions definition once requests exactly what Dagster's own does,
    tick after tick, and leaves the instance's method as it was."""
    from wijk_assets.runner.refresh import evaluate_automation

    years = dg.DynamicPartitionsDefinition(name="synthetic_release_year")

    @dg.asset(partitions_def=years)
    def raw_source():
        return 1

    @dg.asset(deps=[raw_source], automation_condition=dg.AutomationCondition.eager(), partitions_def=years)
    def staged():
        return 1

    @dg.asset(deps=[staged], automation_condition=dg.AutomationCondition.eager())
    def table():
        return 1

    defs = dg.Definitions(assets=[raw_source, staged, table])
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("synthetic_release_year", ["2019", "2020", "2021"])
        reads = []
        read = instance.get_dynamic_partitions

        def counting(partitions_def_name):  # Dagster passes it by keyword
            reads.append(partitions_def_name)
            return read(partitions_def_name)

        plain_cursor = cached_cursor = None
        for tick in range(3):
            if tick == 1:
                dg.materialize([raw_source], instance=instance, partition_key="2020")
            plain = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=plain_cursor)
            instance.get_dynamic_partitions = counting
            try:
                cached = evaluate_automation(defs, instance, cached_cursor)
            finally:
                del instance.get_dynamic_partitions
            plain_cursor, cached_cursor = plain.cursor, cached.cursor
            for key in (staged.key, table.key):
                assert cached.get_requested_partitions(key) == plain.get_requested_partitions(key), (tick, key)
            assert reads and set(reads) == {"synthetic_release_year"} and len(reads) == 1, reads
            reads.clear()
        assert plain.get_requested_partitions(staged.key) == set()  # it settled (nothing ran in between)
        assert "get_dynamic_partitions" not in vars(instance)


def test_dbt_tables_are_named_schema_dot_table_whichever_warehouse_file_the_manifest_was_parsed_for():
    """dagster-dbt would prefix the database, which dbt-duckdb takes from the warehouse file's name; the
    definitions must not depend on which file the project was last parsed for (defs/dbt/project.py)."""
    graph = _graph()
    names = {}
    for key in set(dbt_feature_models.keys) | set(dbt_training_models.keys):
        names[key.to_user_string()] = graph.get(key).metadata.get("dagster/table_name")
    assert names["marts/fct_area_features"] == "marts.fct_area_features"
    assert names["staging/concept_map"] == "staging.concept_map"
    wrong = {k: v for k, v in names.items() if v != k.replace("/", ".")}
    assert not wrong, wrong


def test_release_monitoring_and_drivers_are_declared_as_the_automation_tests_model_them():
    """unit/test_publish_follows.py checks the behaviour on a toy graph of this shape: keep the real
    declarations and the toy's in step."""
    from wijk_assets.defs.automation.conditions import downstream_automation_condition
    from wijk_assets.defs.monitoring.assets import CHANGES_CONDITION
    from wijk_assets.keys import (CHANGES_KEY, DRIVERS_KEY, FEATURE_CATALOG_KEY, FEATURE_TABLE_KEY, GATE_KEY,
                                  MODEL_KEY, TRAINING_KEY)
    from wijk_assets_tests.unit.test_publish_follows import MONITORING_CONDITION

    graph = _graph()
    changes = graph.get(CHANGES_KEY)
    assert changes.automation_condition == downstream_automation_condition(**CHANGES_CONDITION)
    roles = {MODEL_KEY: "model", FEATURE_TABLE_KEY: "values", TRAINING_KEY: "training", FEATURE_CATALOG_KEY: "training"}
    toy = {dg.AssetKey(["models", "toy"]): "model", dg.AssetKey(["marts", "toy_values"]): "values",
           dg.AssetKey(["marts", "toy_training"]): "training"}
    assert {k: sorted({roles[x] for x in v}) for k, v in CHANGES_CONDITION.items()} == \
           {k: sorted({toy[x] for x in v}) for k, v in MONITORING_CONDITION.items()}
    assert set(changes.parent_keys) == {FEATURE_TABLE_KEY, TRAINING_KEY, MODEL_KEY, FEATURE_CATALOG_KEY}
    assert set(graph.get(DRIVERS_KEY).parent_keys) == {MODEL_KEY, TRAINING_KEY, GATE_KEY}
