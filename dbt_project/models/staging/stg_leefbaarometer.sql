-- Outcome staging: raw.leefbaarometer (Leefbaarometer 3.0 wijk scores, 2022 wijk layout back-cast to
-- 2002), long and clean, one row per wijk x year x outcome (lbm, afw, fys, onv, soc, vrz, won).
-- These are targets: nothing downstream may use them as features. Recipe: macros/stage_source.sql.
{{ config(materialized='view') }}
{{ staged_view('leefbaarometer') }}
