"""Load ``catalog.yaml`` and find the files in a data folder that belong to each source.

Pure functions: no Dagster here, so the release sensor, the raw assets and the tests share one answer
to "which files make up source S, year Y".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml


CATALOG_PATH = Path(__file__).resolve().parent / "catalog.yaml"


@dataclass(frozen=True)
class FileSpec:
    """One ``files:`` entry of a source: a glob, a reader format and how to find table id and year."""

    source: str
    glob: str
    format: str
    year_from: str  # "filename" or "column"
    year_regex: str | None
    year_column: str | None
    cbs_table_id: str | None
    cbs_table_id_regex: str | None
    cbs_table_id_from: str = "filename"  # what cbs_table_id_regex searches: the file name or its relative path


@dataclass(frozen=True)
class SourceFile:
    """A concrete file in the data folder matched to its spec."""

    spec: FileSpec
    path: Path
    relative_path: str
    filename_year: int | None  # set when the year comes from the file name
    cbs_table_id: str | None


@dataclass(frozen=True)
class SourceSpec:
    name: str
    title: str
    publisher: str
    licence: str
    levels: tuple[str, ...]
    files: tuple[FileSpec, ...]
    live_title_pattern: str | None
    live_table_ids: tuple[str, ...]
    live_filter: str | None


def _file_spec(source: str, entry: dict) -> FileSpec:
    year = entry.get("year") or {}
    table = entry.get("cbs_table_id")
    return FileSpec(
        source=source,
        glob=entry["glob"],
        format=entry["format"],
        year_from=year.get("from", "filename"),
        year_regex=year.get("regex"),
        year_column=year.get("column"),
        cbs_table_id=table if isinstance(table, str) else None,
        cbs_table_id_regex=table.get("regex") if isinstance(table, dict) else None,
        cbs_table_id_from=table.get("from", "filename") if isinstance(table, dict) else "filename",
    )


@lru_cache(maxsize=4)
def load_catalog(path: Path = CATALOG_PATH) -> dict[str, SourceSpec]:
    raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    catalog: dict[str, SourceSpec] = {}
    for name, body in raw["sources"].items():
        live = body.get("live") or {}
        catalog[name] = SourceSpec(
            name=name,
            title=body["title"],
            publisher=body.get("publisher", ""),
            licence=body.get("licence", ""),
            levels=tuple(body.get("levels", [])),
            files=tuple(_file_spec(name, e) for e in body.get("files", [])),
            live_title_pattern=live.get("title_pattern"),
            live_table_ids=tuple(live.get("table_ids", [])),
            live_filter=live.get("filter"),
        )
    return catalog


def source_names() -> list[str]:
    return list(load_catalog())


def _match_group(regex: str | None, text: str) -> str | None:
    if not regex:
        return None
    match = re.search(regex, text)
    return match.group(1) if match else None


def find_source_files(source: str, data_dir: Path) -> list[SourceFile]:
    """All files in ``data_dir`` that belong to ``source``, in a stable order."""
    spec = load_catalog()[source]
    found: list[SourceFile] = []
    for file_spec in spec.files:
        for path in sorted(Path(data_dir).glob(file_spec.glob)):
            if not path.is_file():
                continue
            year = None
            if file_spec.year_from == "filename":
                text = _match_group(file_spec.year_regex, path.name)
                year = int(text) if text else None
                if year is None:
                    # A file that matches the glob but not the year pattern is a naming mistake,
                    # not something to skip silently.
                    raise ValueError(
                        f"file {path}: matches {file_spec.glob!r} of source {source!r} but its name "
                        f"has no year matching {file_spec.year_regex!r}; rename it like the others"
                    )
            relative = path.relative_to(data_dir).as_posix()
            table_id = file_spec.cbs_table_id or _match_group(
                file_spec.cbs_table_id_regex, relative if file_spec.cbs_table_id_from == "path" else path.name
            )
            found.append(
                SourceFile(
                    spec=file_spec,
                    path=path,
                    relative_path=relative,
                    filename_year=year,
                    cbs_table_id=table_id,
                )
            )
    return found


# Files in a source folder that are documentation, not data.
_NOT_DATA = re.compile(r"(?i)^(\.|readme|provenance|licen[cs]e)|\.(md|txt|pdf)$")


def unmatched_files(data_dir: Path) -> list[tuple[str, list[str]]]:
    """Files in the folders the catalog reads from that no source's ``glob`` matches: (path relative to
    ``data_dir``, the globs of that folder). A release saved under another name (StatLine's own download
    name, a different case) would otherwise be ignored without a word."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        return []
    specs = [f for source in load_catalog().values() for f in source.files]
    matched = {path.resolve() for f in specs for path in data_dir.glob(f.glob)}
    folders: dict[Path, list[str]] = {}
    for f in specs:
        folder_glob = f.glob.rsplit("/", 1)[0] if "/" in f.glob else "."
        for folder in sorted(data_dir.glob(folder_glob)):
            if folder.is_dir():
                folders.setdefault(folder, []).append(f.glob)
    out = []
    for folder, globs in sorted(folders.items()):
        for path in sorted(folder.iterdir()):
            if path.is_file() and not _NOT_DATA.search(path.name) and path.resolve() not in matched:
                out.append((path.relative_to(data_dir).as_posix(), sorted(set(globs))))
    return out


def unmatched_file_lines(data_dir: Path) -> list[str]:
    """One line per :func:`unmatched_files` entry, for the refresh log and ``wijk-assets status``."""
    return [f"not loaded: {path} matches no file pattern of the source catalog ({', '.join(globs)}); "
            "if it is a release, rename it to match (wijk_assets/lib/sources/catalog.yaml)"
            for path, globs in unmatched_files(data_dir)]
