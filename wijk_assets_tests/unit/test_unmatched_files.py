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


def test_status_names_a_source_the_release_check_cannot_read(tmp_path):
    """A Leefbaarometer release saved by Dutch Excel (';' and decimal commas; SYNTHETIC two-row file): the
    refresh cannot list the source and exits 1, but no run failed, so it is no stuck partition; status
    names it (and exits 1 for it, see print_status)."""
    from wijk_assets.defs.resources import CbsSourceResource
    from wijk_assets.runner.status import unreadable_sources

    folder = tmp_path / "leefbaarometer"
    folder.mkdir()
    (folder / "lbm3_scores_wijken_2002-2024.csv").write_text(
        "wk_code;wk_naam;jaar;lbm;afw;fys;onv;soc;vrz;won\nWK010600;Centrum;2024;4,1;0,05;NA;NA;NA;NA;NA\n")
    errors = unreadable_sources(CbsSourceResource(data_dir=str(tmp_path)), ["leefbaarometer"])
    assert list(errors) == ["leefbaarometer"]
    assert "lbm3_scores_wijken_2002-2024.csv, row 1" in errors["leefbaarometer"] and "semicolon" in errors["leefbaarometer"]
    (folder / "lbm3_scores_wijken_2002-2024.csv").write_text(
        "wk_code,wk_naam,jaar,lbm,afw,fys,onv,soc,vrz,won\nWK010600,Centrum,2024,4.1,0.05,NA,NA,NA,NA,NA\n")
    assert unreadable_sources(CbsSourceResource(data_dir=str(tmp_path)), ["leefbaarometer"]) == {}
