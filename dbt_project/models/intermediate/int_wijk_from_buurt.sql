-- Wijk values built from buurt values, for a source and year that has buurten of a wijk but no row for
-- the wijk itself (e.g. a buurt-only extract). Flagged aggregated_from_buurt = true.
--   counts (kind 'count')  -> sum over the buurten, only when every buurt has a value
--   everything else        -> unweighted mean over the buurten with a value (an approximation for
--                             shares and averages: the buurten are not weighted by population)
-- provenance: the buurt rows' file and hash (source_row NULL: the number is no single cell).
-- Empty on the current data (every source-year that lists buurten also lists their wijken).
with area_codes as (
    select * from {{ ref('int_area_names') }} where source <> 'leefbaarometer'
),

-- wijken a source-year has buurten of but no row for (found cheaply from the code list first)
missing_wijken as (
    select distinct source, year, wijk_code from area_codes where area_level = 'buurt'
    except
    select source, year, area_code from area_codes where area_level = 'wijk'
),

measures as (
    select m.*
    from {{ ref('stg_measure_map') }} as m
    where m.mapping_status = 'mapped'
      and m.source in (select source from missing_wijken)
),

buurt_cells as (
    select c.measure_id, c.area_code, c.value, c.missing_reason, 'WK' || substr(c.area_code, 3, 6) as wijk_code
    from {{ ref('stg_cells') }} as c
    where c.area_code like 'BU%'
      and c.measure_id in (select measure_id from measures)
),

aggregated as (
    select
        b.wijk_code,
        b.measure_id,
        count(*) as n_cells,
        count(b.value) as n_values,
        -- summed over a sorted list: the same value whatever order the rows arrive in (determinism)
        list_sum(list_sort(list(b.value))) as sum_value,
        list_avg(list_sort(list(b.value))) as avg_value,
        mode(b.missing_reason) as common_missing_reason,
        count(distinct b.area_code) as n_buurten
    from buurt_cells as b
    join measures as m using (measure_id)
    join missing_wijken as w
      on w.source = m.source and w.year = m.release_year and w.wijk_code = b.wijk_code
    group by b.wijk_code, b.measure_id
)

select
    a.wijk_code as area_code,
    'wijk' as area_level,
    m.release_year as year,
    m.feature,
    m.concept,
    case when m.kind = 'count' then case when a.n_values = a.n_cells then a.sum_value end
         else a.avg_value end as value,
    case when a.n_values = 0 or (m.kind = 'count' and a.n_values < a.n_cells)
         then coalesce(a.common_missing_reason, 'not_available') end as missing_reason,
    m.unit,
    m.kind,
    m.source,
    m.cbs_table_id,
    m.source_file,
    m.source_sha256,
    cast(null as integer) as source_row,
    m.measure_key,
    true as aggregated_from_buurt,
    a.n_buurten::integer as n_buurten
from aggregated as a
join {{ ref('stg_measure_map') }} as m using (measure_id)
