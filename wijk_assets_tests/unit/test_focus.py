"""The reports about the focus gemeente are made again when WIJK_GEMEENTE changes (wijk_assets.runner.focus).

SYNTHETIC: materialisations of the report assets are recorded in a temporary Dagster instance with the
metadata the real assets write (``gemeente``); nothing is built. The real-data behaviour (refresh on a
national build with another gemeente) is in the README and the closing note.
"""

from __future__ import annotations

import dagster as dg

from wijk_assets.keys import AUDIT_KEY, MODEL_CARD_KEY, REGISTER_KEY, WIJKBEELD_KEY
from wijk_assets.runner.focus import focus_lines, made_for, made_for_another, remake_for_focus
from wijk_assets.runner.refresh import ExecutedRun


def _made(instance, key, gemeente_metadata):
    metadata = {} if gemeente_metadata is None else {"gemeente": gemeente_metadata}
    instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=key, metadata=metadata))


def _all_made_for(instance, gemeente: str):
    _made(instance, WIJKBEELD_KEY, f"Assen ({gemeente})")  # the wijkbeeld names the gemeente and its code
    _made(instance, REGISTER_KEY, gemeente)
    _made(instance, MODEL_CARD_KEY, gemeente)


def test_reports_made_for_another_gemeente_are_found_by_the_code_their_metadata_names():
    with dg.instance_for_test() as instance:
        assert made_for_another(instance, "GM0106") == {}  # nothing made yet: the automation makes it
        _all_made_for(instance, "GM0106")
        assert made_for(instance, WIJKBEELD_KEY) == "GM0106"
        assert made_for_another(instance, "GM0106") == {}
        assert made_for_another(instance, " gm0106 ") == {}
        assert made_for_another(instance, "GM0344") == {
            WIJKBEELD_KEY: "GM0106", REGISTER_KEY: "GM0106", MODEL_CARD_KEY: "GM0106"}
        lines = focus_lines(made_for_another(instance, "GM0344"), "GM0344")
        assert len(lines) == 1 and "WIJK_GEMEENTE is GM0344" in lines[0] and "reports/wijkbeeld (GM0106)" in lines[0]
        assert "run `wijk-assets refresh`" in lines[0]
        # made again for GM0344: nothing left
        _all_made_for(instance, "GM0344")
        assert made_for_another(instance, "GM0344") == {} and focus_lines({}, "GM0344") == []


def test_a_report_without_a_named_gemeente_is_not_taken_for_another_one_on_that_ground_alone():
    """Materialisations by an older version name no gemeente: not made again on that ground alone, but
    with the others when one of them names another gemeente (they were made together)."""
    with dg.instance_for_test() as instance:
        for key in (WIJKBEELD_KEY, REGISTER_KEY, MODEL_CARD_KEY):
            _made(instance, key, None)
        assert made_for_another(instance, "GM0344") == {}
        _made(instance, WIJKBEELD_KEY, "Assen (GM0106)")
        assert made_for_another(instance, "GM0106") == {}
        assert made_for_another(instance, "GM0344") == {
            WIJKBEELD_KEY: "GM0106", REGISTER_KEY: "unknown", MODEL_CARD_KEY: "unknown"}


def test_the_register_entry_and_model_card_are_made_again_together():
    """They are one multi-asset that cannot be split: one of them made for another gemeente means both."""
    with dg.instance_for_test() as instance:
        _all_made_for(instance, "GM0344")
        _made(instance, MODEL_CARD_KEY, "GM0106")
        assert made_for_another(instance, "GM0344") == {REGISTER_KEY: "GM0106", MODEL_CARD_KEY: "GM0106"}


def test_refresh_makes_the_reports_again_in_one_run_only_when_the_gemeente_changed():
    calls = []

    def execute(defs, instance, keys, partition, *, trigger):
        calls.append((sorted(k.to_user_string() for k in keys), partition, trigger))
        return ExecutedRun(trigger=trigger, asset_keys=[k.to_user_string() for k in keys], partition_key=partition,
                           run_id="r", success=True, seconds=0.0)

    lines = []
    with dg.instance_for_test() as instance:
        _all_made_for(instance, "GM0106")
        assert remake_for_focus(None, instance, "GM0106", execute=execute, log=lines.append) is None
        assert calls == [] and lines == []
        run = remake_for_focus(None, instance, "GM0344", execute=execute, log=lines.append)
        assert run is not None and run.success
        assert calls == [(["reports/algorithm_register_entry", "reports/model_card", "reports/wijkbeeld"], None,
                          "focus gemeente changed")]
        assert len(lines) == 1 and "WIJK_GEMEENTE is GM0344" in lines[0] and "made again" in lines[0]
        # with an audit trail made before, it follows in the same run (no new data version would trigger it)
        instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=AUDIT_KEY))
        remake_for_focus(None, instance, "GM0344", execute=execute, log=lines.append)
        assert calls[-1][0] == ["reports/algorithm_register_entry", "reports/audit_trail", "reports/model_card",
                                "reports/wijkbeeld"]
