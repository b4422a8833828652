"""A model kept across a re-selection carries the current selection's figures (real lbm build).

When the model selection runs again and makes the same choice (a new selection code version, a
re-selection by the documented rule, nested CV on request), the model step finds the same training
fingerprint and keeps the model. Its stored metrics used to keep the ``model_selection`` figures of the
selection run it was trained after, so the model card and the register entry showed figures the current
selection record no longer holds. Starts from a copy of the session's ``lbm`` build; the re-selection
is simulated by rewriting the stored record's figures (SYNTHETIC figures on the real warehouse)."""

from __future__ import annotations

import json
import shutil

import dagster as dg
import duckdb

from wijk_assets.definitions import build_definitions
from wijk_assets.keys import MODEL_KEY
from wijk_assets.runner.materialize import materialize_keys
from wijk_assets.settings import Settings


def test_a_kept_model_takes_the_figures_of_the_selection_that_chose_it_again(lbm_warehouse, shared_data_dir, tmp_path):
    db = tmp_path / "wijk.duckdb"
    shutil.copyfile(lbm_warehouse["db"], db)
    with duckdb.connect(str(db)) as con:
        version, record_text = con.execute(
            "SELECT selection_version, record FROM ml.model_selection WHERE outcome = 'lbm'").fetchone()
        before = con.execute("SELECT model_version, metrics FROM ml.model_runs WHERE outcome = 'lbm'").fetchone()
        record = json.loads(record_text)
        record["corrected"] = {**record["corrected"], "r2": 0.123456, "method": "nested"}
        record["method"] = "nested grouped CV (simulated re-selection)"
        con.execute("UPDATE ml.model_selection SET selection_version = 'resel00000000001', record = ? "
                    "WHERE outcome = 'lbm'", [json.dumps(record)])
    assert json.loads(before[1])["model_selection"]["version"] == version

    settings = Settings(data_dir=shared_data_dir, duckdb_path=db, cbs_base_url=None, gemeente="GM0106")
    result = materialize_keys(build_definitions(settings), dg.DagsterInstance.ephemeral(), [MODEL_KEY], "lbm",
                              trigger="test")
    assert result.success

    with duckdb.connect(str(db), read_only=True) as con:
        action = con.execute("SELECT action FROM ml.model_run_log WHERE outcome = 'lbm' "
                             "ORDER BY logged_at DESC LIMIT 1").fetchone()[0]
        after = con.execute("SELECT model_version, metrics FROM ml.model_runs WHERE outcome = 'lbm'").fetchone()
    assert action == "reused" and after[0] == before[0]  # the very model, not retrained
    chosen = json.loads(after[1])["model_selection"]
    assert chosen["version"] == "resel00000000001"
    assert chosen["corrected"]["r2"] == 0.123456 and chosen["corrected"]["method"] == "nested"
    assert chosen["method"] == "nested grouped CV (simulated re-selection)"
    # everything else the model's metrics hold is the trained model's own
    old, new = json.loads(before[1]), json.loads(after[1])
    assert json.dumps({k: v for k, v in old.items() if k != "model_selection"}, sort_keys=True) == \
        json.dumps({k: v for k, v in new.items() if k != "model_selection"}, sort_keys=True)
