-- fct_area_feature_values holds one row per area x year x feature (severity error).
-- Within one measure (file x key x subgroup) that is the stg_cells grain test (measure_id, area_code);
-- this test covers the rest without grouping all 5M rows again:
--   1. two measures mapping to the same feature and year (e.g. two files of one year, such as the 2021
--      nabijheid OData extract and the transposed StatLine sample) must not both cover an area;
--   2. wijk values aggregated from buurten must not collide with an observed value.
{{ config(severity='error') }}

with shared as (
    select release_year, feature, measure_id
    from {{ ref('stg_measure_map') }}
    where mapping_status = 'mapped' and source <> 'leefbaarometer'
    qualify count(*) over (partition by release_year, feature) > 1
),

duplicated_across_measures as (
    select s.release_year as year, s.feature, c.area_code, count(*) as n_rows
    from {{ ref('stg_cells') }} as c
    join shared as s using (measure_id)
    group by all
    having count(*) > 1
),

aggregated as (
    select area_code, year, feature from {{ ref('int_wijk_from_buurt') }}
),

colliding_aggregates as (
    select a.year, a.feature, a.area_code, 2 as n_rows
    from aggregated as a
    join {{ ref('fct_area_feature_values') }} as f
      on f.area_code = a.area_code and f.year = a.year and f.feature = a.feature
     and not f.aggregated_from_buurt
)

select * from duplicated_across_measures
union all
select * from colliding_aggregates
