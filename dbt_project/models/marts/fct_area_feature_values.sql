-- LONG feature table: one row per area x year x feature with its value (or why it is missing) and the
-- lineage of the number (source, CBS table id, file, sha256, row, verbatim measure key). Every feature
-- source except the Leefbaarometer (outcomes are never features), plus wijk values aggregated from
-- buurten where a source lacks the wijk row (int_wijk_from_buurt).
-- A view: the ~5M cells are stored once, compactly, in staging.stg_cells (+ stg_measure_map).
{{ config(materialized='view') }}
{{ feature_cells() }}
union all
select
    area_code, area_level, year, feature, concept, value, missing_reason, unit, kind, source,
    cbs_table_id, source_file, source_sha256, source_row, measure_key, aggregated_from_buurt, n_buurten
from {{ ref('int_wijk_from_buurt') }}
