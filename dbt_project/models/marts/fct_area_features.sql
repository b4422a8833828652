-- WIDE feature table: one row per area x year, one column per feature (DuckDB PIVOT over
-- fct_area_feature_values, so a concept added to the concept map becomes a column without SQL changes).
-- The columns are documented row by row in feature_catalog (a dbt test checks it covers every column).
-- A row exists for every area and year that any feature source reports; a NULL cell means the feature is
-- missing for that area-year (fct_area_feature_values.missing_reason says why).
-- Only cells with a value are pivoted (faster); one NULL placeholder row per feature keeps features that
-- have no value at all (e.g. not yet published) as columns, and is removed again after the pivot.
with long as (
    select area_code, year, feature, value
    from {{ ref('fct_area_feature_values') }}
    where value is not null
    union all
    select distinct '~placeholder' as area_code, 0 as year, feature, cast(null as double) as value
    from {{ ref('fct_area_feature_values') }}
),

-- every area-year a feature source reports (from the code list; cheaper than the 5M cells)
area_years as (
    select distinct n.area_code, n.area_level, n.year
    from {{ ref('int_area_names') }} as n
    where (n.source, n.year) in (
        select distinct source, release_year from {{ ref('stg_measure_map') }}
        where mapping_status = 'mapped' and source <> 'leefbaarometer')
    union
    select distinct area_code, area_level, year from {{ ref('int_wijk_from_buurt') }}
)

select
    a.area_code,
    a.area_level,
    {{ gemeente_code_of('a.area_code') }} as gemeente_code,
    {{ wijk_code_of('a.area_code') }} as wijk_code,
    a.year,
    w.* exclude (area_code, year)
from area_years as a
left join (
    pivot long
    on feature
    using first(value)
    group by area_code, year
) as w using (area_code, year)
-- explicit row order: two builds of the same data give the same table, row for row
order by a.area_code, a.year
