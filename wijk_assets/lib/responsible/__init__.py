"""Responsible-use guards and documentation: privacy, stigma, Algoritmeregister/model card, audit.

``privacy``, ``stigma`` and ``register`` are pure pandas/Python (no Dagster); ``audit`` reads a Dagster
instance but defines no assets. Import from the submodules, e.g.
``from wijk_assets.lib.responsible.privacy import suppress_small_areas``.
"""

from __future__ import annotations

from wijk_assets.lib.responsible.privacy import (
    SuppressionReport,
    read_survey_csv,
    reject_personal_data,
    suppress_small_areas,
)
from wijk_assets.lib.responsible.register import (
    MissingFactError,
    RegisterFacts,
    build_model_card,
    build_register_entry,
    register_json,
    render_register_markdown,
)
from wijk_assets.lib.responsible.stigma import (
    BANNED_TERMS,
    SENSITIVE_DEFAULT,
    check_no_judgemental_labels,
    check_no_sensitive_columns,
    find_judgemental_labels,
    is_sensitive,
    sensitive_columns,
)

__all__ = [
    "BANNED_TERMS",
    "SENSITIVE_DEFAULT",
    "MissingFactError",
    "RegisterFacts",
    "SuppressionReport",
    "build_model_card",
    "build_register_entry",
    "check_no_judgemental_labels",
    "check_no_sensitive_columns",
    "find_judgemental_labels",
    "is_sensitive",
    "read_survey_csv",
    "register_json",
    "reject_personal_data",
    "render_register_markdown",
    "sensitive_columns",
    "suppress_small_areas",
]
