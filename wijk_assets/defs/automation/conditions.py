"""Declarative automation for everything downstream of raw (the ``wijk_automation`` sensor evaluates it).

Kept free of asset imports so every stage's assets can use :func:`downstream_automation_condition`
without an import cycle.
"""

from __future__ import annotations

from collections.abc import Iterable

import dagster as dg




def downstream_automation_condition(
    triggered_by: Iterable[dg.AssetKey] | None = None, may_be_missing: Iterable[dg.AssetKey] = ()
) -> dg.AutomationCondition:
    """For the dbt, ML and report assets: run once after upstream *data* changed, when complete and checked.

    This is :meth:`AutomationCondition.eager` with one change: a dependency counts as updated only
    when its new materialisation carries a different **data version** (or it is requested in the same
    run). Raw partitions are versioned by the sha256 of their source files, dbt and report assets by a
    hash of their code version and their inputs' data versions, models by their content; so reloading
    an unchanged file, or rebuilding a mart from identical inputs, retrains nothing downstream.

    The rest is eager's: not while any dependency partition is missing or *in progress* (a queued
    run counts), and not while the asset itself is in progress. The release sensor requests all the
    raw runs of a tick at once, so while the last of them is queued behind the ``duckdb`` pool the
    marts wait, and they are requested once when it finishes (``since_last_handled`` folds all the
    updates into that one request). ``all_deps_blocking_checks_passed()`` additionally holds an asset
    back while a blocking asset check (a Great Expectations gate) has failed on a dependency.

    ``triggered_by`` names the dependencies whose new data triggers a run, when not all should: an
    asset that reads both a model and the mart the model is trained on (a diamond) must wait for the
    model, or it would run once after the mart and again after the model. The guards (missing, in
    progress, failed blocking checks) still look at every dependency, except that partitions of
    ``may_be_missing`` may be missing: the published tables must follow the explanations of the
    outcomes that passed gate 3 although a withheld outcome has none.
    """
    AC = dg.AutomationCondition
    new_data_upstream = AC.any_deps_match(
        (AC.newly_updated() & AC.data_version_changed() & ~AC.executed_with_root_target()).with_label(
            "updated_with_new_data_version"
        )
        | AC.will_be_requested()
    )
    if triggered_by is not None:
        new_data_upstream = new_data_upstream.allow(dg.AssetSelection.assets(*triggered_by))
    new_data_upstream = new_data_upstream.with_label("any_deps_have_new_data")
    deps_missing = AC.any_deps_missing()
    may_be_missing = list(may_be_missing)
    if may_be_missing:
        deps_missing = deps_missing.ignore(dg.AssetSelection.assets(*may_be_missing))
    return (
        (AC.newly_missing() | new_data_upstream).since_last_handled()
        & ~deps_missing
        & ~AC.any_deps_in_progress()
        & ~AC.in_progress()
        & AC.all_deps_blocking_checks_passed()
    ).with_label("wijk_downstream")


automation_sensor = dg.AutomationConditionSensorDefinition(
    "wijk_automation",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Evaluates the automation conditions of the dbt and ML assets (downstream_automation_condition).",
)
