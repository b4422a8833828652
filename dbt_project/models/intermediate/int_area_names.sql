-- Every area code each source names, per source and year, with the names the source gives and the wijk
-- layout (indeling) that source-year uses (seed source_layouts; default = the year itself).
-- Read from the raw tables directly (a group-by), so every code counts, mapped measures or not.
with codes as (
    {% for s in raw_sources() %}
    select
        '{{ s }}' as source,
        release_year as year,
        {{ clean_area_code('area_code') }} as area_code,
        max(nullif(trim(area_name), '')) as area_name,
        max(nullif(trim(gemeente_name), '')) as gemeente_name
    from {{ source('raw', s) }}
    group by all
    {% if not loop.last %}union all{% endif %}
    {% endfor %}
)

select
    c.source,
    c.year,
    coalesce(l.layout_year, c.year) as layout_year,
    c.area_code,
    {{ area_level('c.area_code') }} as area_level,
    c.area_name,
    c.gemeente_name,
    {{ wijk_code_of('c.area_code') }} as wijk_code,
    {{ gemeente_code_of('c.area_code') }} as gemeente_code
from codes as c
left join {{ ref('source_layouts') }} as l
  on l.source = c.source and c.year between l.year_from and l.year_to
where {{ area_level('c.area_code') }} is not null
