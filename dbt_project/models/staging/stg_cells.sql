-- Every mapped raw cell of every source, compact (see macros/stage_source.sql for value and
-- missing_reason). Shares (concepts with a denominator) are computed here: numerator / denominator of the
-- same area within the same file, year and subgroup.
with cells as (
    {% for s in raw_sources() %}
    {{ stage_cells(s) }}
    {% if not loop.last %}union all{% endif %}
    {% endfor %}
),

denominators as (
    select measure_id, area_code, value, missing_reason
    from cells
    where measure_id in (select denominator_measure_id from {{ ref('stg_measure_map') }})
)

select
    c.measure_id,
    c.area_code,
    case
        when c.denominator_measure_id is null then c.value
        when c.missing_reason is null and d.value > 0 then 100.0 * c.value / d.value
    end as value,
    case
        when c.missing_reason is not null or c.denominator_measure_id is null then c.missing_reason
        when d.value is null then coalesce(d.missing_reason, 'not_available')
        when d.value = 0 then 'not_applicable'
    end as missing_reason,
    c.source_row
from cells as c
left join denominators as d
  on d.measure_id = c.denominator_measure_id
 and d.area_code = c.area_code
