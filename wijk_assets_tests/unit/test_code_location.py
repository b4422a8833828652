"""The code location loads the way ``dagster dev`` loads it, and shows what a UI user needs (issue 10).

The load test runs ``dagster definitions validate`` on ``workspace.yaml`` in a subprocess whose PATH does
not contain the venv (the README's ``.venv/bin/dagster dev`` without an activated venv) and with
``DAGSTER_IS_DEV_CLI`` set as ``dagster dev`` sets it, with an empty dbt target folder so the dbt
manifest must be parsed during the load.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


from wijk_assets.definitions import defs

REPO = Path(__file__).resolve().parents[2]


def test_code_location_loads_without_the_venv_on_path(tmp_path):
    venv_bin = Path(sys.executable).parent
    dagster_cli = venv_bin / "dagster"
    assert dagster_cli.exists(), f"dagster CLI not found beside {sys.executable}"
    path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if Path(p) != venv_bin)
    home = tmp_path / "dagster_home"
    home.mkdir()
    env = {
        "PATH": path or "/usr/bin:/bin",
        "HOME": os.environ.get("HOME", str(tmp_path)),
        "DAGSTER_HOME": str(home),
        "DAGSTER_IS_DEV_CLI": "1",
        "WIJK_DBT_TARGET_PATH": str(tmp_path / "dbt_target"),  # no manifest yet: the load must parse
        "DAGSTER_DISABLE_TELEMETRY": "1",
    }
    result = subprocess.run(
        [str(dagster_cli), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "All code locations passed validation" in output
    assert (tmp_path / "dbt_target" / "manifest.json").exists()


def test_every_asset_has_kind_owner_and_description():
    graph = defs.resolve_asset_graph()
    missing = []
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        if not node.is_materializable:
            continue
        if not node.kinds:
            missing.append(f"{key.to_user_string()}: no kind")
        if not node.owners:
            missing.append(f"{key.to_user_string()}: no owner")
        if not (node.description or "").strip():
            missing.append(f"{key.to_user_string()}: no description")
    assert not missing, missing


def test_stage_jobs_cover_every_downstream_asset():
    """Every asset below raw belongs to a named stage job, so no CLI run is an ephemeral job."""
    from wijk_assets.keys import RAW_PREFIX
    from wijk_assets.runner.materialize import stage_job_for

    graph = defs.resolve_asset_graph()
    jobs = {job.name for job in defs.resolve_all_job_defs() if not job.name.startswith("__")}
    assert {"build_features", "train_models", "publish_and_report", "update_warehouse"} <= jobs
    for key in graph.get_all_asset_keys():
        if not graph.get(key).is_materializable:
            continue
        job = stage_job_for(defs, [key])
        assert job is not None, f"{key.to_user_string()} is in no named job"
        if key.path[0] == RAW_PREFIX:
            assert job.name == f"raw_refresh_{key.path[1]}"


def test_dbt_test_checks_are_described():
    undescribed = [
        spec.key.to_user_string()
        for assets_def in defs.resolve_asset_graph().assets_defs
        for spec in assets_def.check_specs
        if not (spec.description or "").strip()
    ]
    assert not undescribed, f"asset checks without a description: {undescribed}"


def test_definitions_hand_their_own_settings_to_the_assets(monkeypatch, tmp_path):
    """One settings route: what build_definitions was given reaches every run through the resources,
    whatever the environment says."""
    from wijk_assets.definitions import build_definitions
    from wijk_assets.settings import Settings

    monkeypatch.setenv("WIJK_GEMEENTE", "GM0106")
    monkeypatch.setenv("WIJK_MIN_RESPONDENTS", "10")
    settings = Settings(data_dir=tmp_path, duckdb_path=tmp_path / "w.duckdb", cbs_base_url=None,
                        gemeente="GM0344", min_inhabitants=80, min_respondents=3, sensitive_opt_in=("x",))
    resources = build_definitions(settings).resources
    assert resources["settings"].gemeente == "GM0344"
    assert resources["settings"].min_inhabitants == 80
    assert resources["settings"].sensitive_opt_in == ["x"]
    assert resources["cbs"].min_respondents == 3
    assert resources["duckdb"].path == str(tmp_path / "w.duckdb")


def test_metadata_floats_are_rounded_for_reading():
    import numpy as np

    from wijk_assets.defs.house_style import rounded

    out = rounded({"r2": 0.6049870133912284, "n": 3, "np": np.float64(0.123456789), "text": "0.60498701"})
    assert out == {"r2": 0.605, "n": 3, "np": 0.1235, "text": "0.60498701"}
