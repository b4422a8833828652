"""Wijkbeeld: the static pages an omgevingsregisseur opens (pure code, no Dagster).

- :mod:`.data` reads what the pages show from the warehouse into plain DataFrames / dicts;
- :mod:`.fmt` formats numbers the Dutch way (decimal comma, thousands dot);
- :mod:`.labels` holds the Dutch names of indicators and outcomes;
- :mod:`.svgmap` draws the wijken as inline SVG from their GeoJSON boundaries;
- :mod:`.charts` renders the Leefbaarometer time series as inline SVG with matplotlib;
- :mod:`.site` assembles the page contexts and writes the folder with the jinja2 templates in
  ``templates/``.

Everything a page needs is inside the page (inline SVG, inline CSS, a few lines of inline JavaScript),
so the folder opens from disk with no network.
"""
