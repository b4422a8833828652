"""Weekly fallback schedules, one per raw source: reload what no longer matches its source.

A Dagster schedule targets exactly one job and every raw asset has its own partition set, so there is
one schedule (and one job) per source. It does not trust a sensor cursor: it rebuilds "what was loaded"
from the last materialisation of every raw partition.
"""

from __future__ import annotations

from collections.abc import Iterable

import dagster as dg

from wijk_assets.defs.automation.release_sensor import (
    SOURCE_TAG,
    TIMEZONE,
    fingerprints_from_materializations,
    known_partitions,
    run_requests,
)
from wijk_assets.defs.raw.assets import RAW_SOURCES, raw_asset_key, release_year_partitions
from wijk_assets.defs.resources import CbsSourceResource
from wijk_assets.lib.release.listing import SourceListing, list_available
from wijk_assets.lib.release.planner import CURSOR_VERSION, RefreshPlan, plan_refresh

WEEKLY_CRON = "0 6 * * 1"


def _unfinished_run_exists(instance: dg.DagsterInstance, source: str, year: str) -> bool:
    from dagster._core.storage.dagster_run import FINISHED_STATUSES

    statuses = [s for s in dg.DagsterRunStatus if s not in FINISHED_STATUSES]
    return bool(
        instance.get_run_records(
            filters=dg.RunsFilter(statuses=statuses, tags={SOURCE_TAG: source, "dagster/partition": year}),
            limit=1,
        )
    )


def weekly_refresh_plan(cbs, instance: dg.DagsterInstance, sources: Iterable[str]) -> tuple[RefreshPlan, SourceListing]:
    """The weekly check: compare what is available with what the raw partitions were last loaded from.

    New years are added as partitions right away (a schedule cannot ask the daemon to add them), and
    partitions that already have a queued or running run for their source are left alone.
    """
    sources = list(sources)
    listing = list_available(cbs, sources)
    partitions = known_partitions(instance, sources)
    baseline = fingerprints_from_materializations(instance, listing, partitions)
    plan = plan_refresh({"version": CURSOR_VERSION, "seq": 0, "sources": baseline}, listing.available(), partitions)
    for source, years in plan.new_partitions.items():
        instance.add_dynamic_partitions(release_year_partitions(source).name, years)
    plan.runs = [r for r in plan.runs if not _unfinished_run_exists(instance, r.source, r.year)]
    return plan, listing


def raw_refresh_job(source: str) -> dg.UnresolvedAssetJobDefinition:
    return dg.define_asset_job(
        f"raw_refresh_{source}",
        selection=dg.AssetSelection.assets(raw_asset_key(source)),
        description=f"(Re)load partitions of raw/{source}; launched by weekly_refresh_{source}.",
    )


def build_weekly_refresh_schedule(
    source: str,
    cron_schedule: str = WEEKLY_CRON,
    default_status: dg.DefaultScheduleStatus = dg.DefaultScheduleStatus.STOPPED,
) -> dg.ScheduleDefinition:
    @dg.schedule(
        name=f"weekly_refresh_{source}",
        cron_schedule=cron_schedule,
        execution_timezone=TIMEZONE,
        default_status=default_status,
        target=raw_refresh_job(source),
        description=(
            f"Fallback for release_sensor: every Monday 06:00 reload the raw/{source} partitions whose "
            "source files/tables differ from what they were last materialised from."
        ),
    )
    def _weekly(context: dg.ScheduleEvaluationContext, cbs: CbsSourceResource):
        plan, listing = weekly_refresh_plan(cbs, context.instance, [source])
        if source in listing.errors:
            raise dg.Failure(f"weekly refresh of {source}: could not list the source: {listing.errors[source]}")
        context.log.info(f"weekly refresh {source}: {plan.summary()}")
        requests = run_requests(plan, f"weekly_refresh_{source}")
        return requests or dg.SkipReason(f"{source}: every partition matches its source ({plan.summary()})")

    return _weekly


weekly_refresh_schedules = [build_weekly_refresh_schedule(source) for source in RAW_SOURCES]
