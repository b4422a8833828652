"""Declarative automation for everything downstream of raw (the ``wijk_automation`` sensor evaluates it).

Kept free of asset imports so every stage's assets can use :func:`downstream_automation_condition`
without an import cycle.
"""

from __future__ import annotations

from collections.abc import Iterable

import dagster as dg

from wijk_assets.keys import RAW_PREFIX




def downstream_automation_condition(
    triggered_by: Iterable[dg.AssetKey] | None = None,
    may_be_missing: Iterable[dg.AssetKey] = (),
    triggered_after_update_by: Iterable[dg.AssetKey] = (),
    waits_for_retraining_on: Iterable[dg.AssetKey] = (),
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

    Failure isolation: a raw partition whose latest load *failed* (unreadable file, or refused by gate 1
    before the swap) is stuck, not pending. It counts neither as missing nor as an unpassed gate (its
    check was planned but never ran), so one bad file never freezes the other sources' updates;
    ``wijk-assets status`` reports it (:mod:`wijk_assets.runner.status`).

    ``triggered_by`` names the dependencies whose new data triggers a run, when not all should: an
    asset that reads both a model and the mart the model is trained on (a diamond) must wait for the
    model, or it would run once after the mart and again after the model. The guards (missing, in
    progress, failed blocking checks) still look at every dependency, except that partitions of
    ``may_be_missing`` may be missing: the published tables must follow the explanations of the
    outcomes that passed gate 3 although a withheld outcome has none.

    ``triggered_after_update_by`` and ``waits_for_retraining_on`` close a diamond across partitionings,
    where "requested in the same run" cannot: the published tables read the feature values
    (unpartitioned) and the explanations (one partition per outcome). New feature values trigger a run
    only once they are materialised (never in the same run as the marts), so the next tick sees
    whether that build also gave new data to what the models are trained on
    (``waits_for_retraining_on``: the training mart, the feature catalog). If so, or if one of those is
    requested in this tick, the asset waits: the models retrain and their explanations follow, and it
    runs once, after them, instead of now on the feature values and again after the explanations. Its
    trigger is kept (``since_last_handled``): if the models do not run after all, it runs a tick later.
    """
    AC = dg.AutomationCondition
    # a dependency materialised since the last evaluation, with another data version, in another run
    updated_with_new_data = (AC.newly_updated() & AC.data_version_changed() & ~AC.executed_with_root_target()
                             ).with_label("updated_with_new_data_version")
    new_data_upstream = AC.any_deps_match(updated_with_new_data | AC.will_be_requested())
    if triggered_by is not None:
        new_data_upstream = new_data_upstream.allow(dg.AssetSelection.assets(*triggered_by))
    after_update = list(triggered_after_update_by)
    if after_update:
        new_data_upstream = new_data_upstream | AC.any_deps_match(updated_with_new_data).allow(
            dg.AssetSelection.assets(*after_update)).with_label("any_deps_updated_with_new_data")
    new_data_upstream = new_data_upstream.with_label("any_deps_have_new_data")
    deps_missing = AC.any_deps_missing()
    may_be_missing = list(may_be_missing)
    if may_be_missing:
        deps_missing = deps_missing.ignore(dg.AssetSelection.assets(*may_be_missing))
    # Failure isolation (issue 11): a raw partition whose load failed (an unreadable file, or one gate 1
    # refused) is *stuck*, not *pending*: waiting for it froze every downstream asset, for all sources.
    # It keeps its previous content (or none), ``wijk-assets status`` lists it, and everything else
    # flows; a raw partition that is missing and never failed (not loaded yet) still holds them back.
    raw_keys = dg.AssetSelection.key_prefixes([RAW_PREFIX])
    deps_missing = deps_missing.ignore(raw_keys) | AC.any_deps_match(
        AC.missing() & ~AC.will_be_requested() & ~AC.execution_failed()
    ).allow(raw_keys).with_label("any_raw_deps_missing_not_failed")
    # Likewise for the raw gate: a failed load leaves its check *planned but never evaluated*, which
    # ``check_passed`` reads as "not passed" and froze everything downstream. Raw partitions are
    # validated before they go live, so for raw dependencies only an actual gate failure holds back.
    retraining = list(waits_for_retraining_on)
    checks_ok = AC.all_deps_blocking_checks_passed().ignore(raw_keys) & AC.all_deps_match(
        AC.all_checks_match(~AC.check_failed(), blocking_only=True)
    ).allow(raw_keys).with_label("no_raw_dep_gate_failed")
    condition = (
        (AC.newly_missing() | new_data_upstream).since_last_handled()
        & ~deps_missing
        & ~AC.any_deps_in_progress()
        & ~AC.in_progress()
        & checks_ok
    )
    if retraining:
        condition = condition & ~AC.any_deps_match(updated_with_new_data | AC.will_be_requested()).allow(
            dg.AssetSelection.assets(*retraining)).with_label("models_retrain_this_tick")
    return condition.with_label("wijk_downstream")


automation_sensor = dg.AutomationConditionSensorDefinition(
    "wijk_automation",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Evaluates the automation conditions of the dbt and ML assets (downstream_automation_condition).",
)
