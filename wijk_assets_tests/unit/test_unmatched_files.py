"""A release saved under a name no source reads is named in the refresh log and ``wijk-assets status``
(SYNTHETIC empty files in a temporary data folder; only their names matter)."""

from __future__ import annotations

from wijk_assets.lib.sources.catalog import unmatched_file_lines, unmatched_files


def test_a_file_in_a_source_folder_that_no_pattern_matches_is_named(tmp_path):
    folder = tmp_path / "cbs_nabijheid"
    folder.mkdir()
    (folder / "nabijheid_voorzieningen_buurt_2023_gm0344_utrecht.csv").write_text("")  # the catalog's name
    (folder / "Nabijheid_voorzieningen__buurt_2024_14102025_164034.csv").write_text("")  # StatLine's own name
    (folder / "PROVENANCE.md").write_text("")  # documentation, not data
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "notes.csv").write_text("")  # not a folder any source reads from
    assert [path for path, _ in unmatched_files(tmp_path)] == [
        "cbs_nabijheid/Nabijheid_voorzieningen__buurt_2024_14102025_164034.csv"]
    [line] = unmatched_file_lines(tmp_path)
    assert line.startswith("not loaded: cbs_nabijheid/Nabijheid_voorzieningen__buurt_2024_14102025_164034.csv")
    assert "cbs_nabijheid/nabijheid_voorzieningen_buurt_*.csv" in line


def test_every_file_of_the_real_layout_is_matched(shared_data_dir):
    assert unmatched_files(shared_data_dir) == []
