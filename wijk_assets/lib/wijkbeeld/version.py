"""Whether the wijkbeeld pages on disk are what the current inputs would render.

The pages are a pure function of the gemeente's data (:class:`~wijk_assets.lib.wijkbeeld.data.GemeenteData`),
the small-number threshold and this package's code and templates: charts carry a fixed SVG hash salt
and no page holds a date, so the same inputs give the same bytes. A refresh whose release does not touch
the gemeente in focus (another gemeente's KWB year, say) therefore need not render ~60 charts again: the
asset compares :func:`inputs_version` with the one its last materialisation recorded and checks that
every page it wrote is still on disk unchanged (:func:`files_sha256`); only then are the pages kept.

Pure: no Dagster, no DuckDB.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import fields
from pathlib import Path

import pandas as pd

from wijk_assets.lib.wijkbeeld.data import GemeenteData

PACKAGE_DIR = Path(__file__).resolve().parent


def code_digest() -> str:
    """sha256 over this package's Python modules and page templates (what renders the pages)."""
    digest = hashlib.sha256()
    for path in sorted([*PACKAGE_DIR.glob("*.py"), *(PACKAGE_DIR / "templates").glob("*")]):
        if path.is_file():
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def _frame_bytes(frame: pd.DataFrame) -> bytes:
    header = json.dumps([[str(c) for c in frame.columns], [str(t) for t in frame.dtypes], len(frame)])
    # JSON of every cell; object cells that JSON cannot hold are written with str(). Floats keep 15
    # significant digits, far beyond the 2-3 decimals a page shows.
    body = frame.to_json(orient="split", index=False, date_format="iso", double_precision=15, default_handler=str)
    return header.encode() + b"\n" + body.encode()


def inputs_version(data: GemeenteData, *, min_inhabitants: int, out_dir: Path) -> str:
    """sha256 over everything the pages are made of, and where they are written."""
    digest = hashlib.sha256()
    digest.update(json.dumps({"code": code_digest(), "min_inhabitants": int(min_inhabitants),
                              "out_dir": str(Path(out_dir).resolve())}).encode())
    for spec in fields(data):
        if not spec.compare:  # derived from the inputs (a cache), not an input
            continue
        value = getattr(data, spec.name)
        digest.update(f"\n{spec.name}\n".encode())
        if isinstance(value, pd.DataFrame):
            digest.update(_frame_bytes(value))
        else:
            digest.update(json.dumps(value, default=str).encode())
    return digest.hexdigest()


def files_sha256(paths: Iterable[Path]) -> dict[str, str]:
    """file path -> sha256 of its bytes."""
    return {str(p): hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in paths}


def pages_intact(recorded: Mapping[str, str]) -> bool:
    """Every recorded page exists with the recorded content (a removed or edited page is rendered again)."""
    if not recorded:
        return False
    for path, sha in recorded.items():
        file = Path(path)
        if not file.is_file() or hashlib.sha256(file.read_bytes()).hexdigest() != sha:
            return False
    return True


__all__ = ["code_digest", "files_sha256", "inputs_version", "pages_intact"]
