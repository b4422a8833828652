-- raw.cbs_kwb, long and clean: one row per area x year x feature with value, missing_reason, unit and
-- provenance (file, sha256, row, CBS table id, verbatim measure key). Recipe: macros/stage_source.sql.
{{ config(materialized='view') }}
{{ staged_view('cbs_kwb') }}
