"""The reports about the focus gemeente (``WIJK_GEMEENTE``), made again when the setting changed.

The wijkbeeld pages, the algorithm-register entry and the model card are about one gemeente, the
setting ``WIJK_GEMEENTE``; everything they are made from (raw, marts, models, explanations, the
published tables) is national. A changed setting is no new data, so the automation conditions, which
follow data versions, do not see it: before, ``refresh`` and ``status`` said everything was up to date
and the new gemeente got no pages until someone ran ``materialize``. Each of these reports records the
gemeente it was made for (``gemeente`` in its materialisation's metadata); ``refresh`` makes again the
ones last made for another gemeente (:func:`remake_for_focus`) and ``status`` lists them
(:func:`focus_lines`).
"""

from __future__ import annotations

import re

import dagster as dg

from wijk_assets.keys import AUDIT_KEY, MODEL_CARD_KEY, REGISTER_KEY, WIJKBEELD_KEY

FOCUS_KEYS = (WIJKBEELD_KEY, REGISTER_KEY, MODEL_CARD_KEY)
# materialised together (one multi-asset that cannot be split): one made for another gemeente means both
TOGETHER = ((REGISTER_KEY, MODEL_CARD_KEY),)
_GEMEENTE_CODE = re.compile(r"GM\d{4}")


def made_for(instance: dg.DagsterInstance, key: dg.AssetKey) -> str | None:
    """The gemeente code the latest materialisation of ``key`` names in its ``gemeente`` metadata; None
    when it was never materialised or its metadata names none (made by an older version)."""
    event = instance.get_latest_materialization_event(key)
    materialization = event.asset_materialization if event is not None else None
    if materialization is None:
        return None
    value = materialization.metadata.get("gemeente")
    codes = _GEMEENTE_CODE.findall(str(getattr(value, "value", value) or ""))
    return codes[-1] if codes else None


def made_for_another(instance: dg.DagsterInstance, gemeente: str) -> dict[dg.AssetKey, str]:
    """The focus reports last made for another gemeente than ``gemeente``: key -> the gemeente it was made
    for (with the other half of a multi-asset, which is made again with it). A report never made is not
    listed: the automation makes what is missing. A report whose metadata names no gemeente (made by an
    older version) is listed as ``unknown`` when another focus report was made for another gemeente: the
    reports were made together, so it is about that gemeente too."""
    stale, unknown = {}, []
    for key in FOCUS_KEYS:
        code = made_for(instance, key)
        if code is not None and code != gemeente.strip().upper():
            stale[key] = code
        elif code is None and instance.get_latest_materialization_event(key) is not None:
            unknown.append(key)
    if stale:
        stale.update({key: "unknown" for key in unknown})
    for group in TOGETHER:
        made = [stale[key] for key in group if key in stale]
        if made:
            stale.update({key: stale.get(key, made[0]) for key in group})
    return {key: stale[key] for key in FOCUS_KEYS if key in stale}


def focus_lines(stale: dict[dg.AssetKey, str], gemeente: str) -> list[str]:
    """``status``'s block for :func:`made_for_another`'s answer (nothing when it is empty)."""
    if not stale:
        return []
    made = ", ".join(f"{key.to_user_string()} ({code})" for key, code in stale.items())
    return [f"FOCUS GEMEENTE CHANGED: WIJK_GEMEENTE is {gemeente}, but these reports were made for another "
            f"gemeente: {made}\n   to do: run `wijk-assets refresh` (it makes them for {gemeente})"]


def remake_for_focus(defs: dg.Definitions, instance: dg.DagsterInstance, gemeente: str, *, execute, log=print):
    """Make again, in one run, the focus reports last made for another gemeente; returns the run (the
    ``execute`` of :mod:`wijk_assets.runner.refresh`), or None when every report is about ``gemeente``.

    The audit trail (every materialisation, from the event log) runs in the same run after them when it
    was made before: the reports' new materialisations carry no new data version, so the automation
    would not bring it up to date."""
    stale = made_for_another(instance, gemeente)
    if not stale:
        return None
    made = ", ".join(f"{key.to_user_string()} ({code})" for key, code in stale.items())
    log(f"focus gemeente: WIJK_GEMEENTE is {gemeente}; made for another gemeente: {made}; made again")
    audit = [AUDIT_KEY] if instance.get_latest_materialization_event(AUDIT_KEY) is not None else []
    return execute(defs, instance, [*stale, *audit], None, trigger="focus gemeente changed")


__all__ = ["FOCUS_KEYS", "focus_lines", "made_for", "made_for_another", "remake_for_focus"]
