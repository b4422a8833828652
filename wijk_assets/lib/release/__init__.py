"""Release planning: what the sources offer now, compared with what was loaded (no Dagster)."""
