-- Every area code seen in any source and layout, closed under its parents: buurt (BU gggg ww bb) ->
-- wijk (WK gggg ww) -> gemeente (GM gggg) -> land (NL00). Parents that no source lists themselves are
-- added (area_name NULL, derived_from_children = true) so every code has its wijk and gemeente row.
-- Names: the OFFICIAL name of the latest boundary year that has the code (int_wijk_geometry: the CBS/
-- Kadaster wijk- en buurtkaart, wijknaam and gemeentenaam; official_name_year says which), else the most
-- recent layout that names the code (wijk/buurt names come from kwb, nabijheid, SES-WOA and
-- Leefbaarometer; 50090NED and 85231ENG carry codes only). Gemeente names: the official map's, else the
-- gemeente row's own name, else any row's gemeente name, else the gemeente_changes seed (new/dissolved
-- gemeenten).
with named as (
    select * from {{ ref('int_area_names') }}
),

official_wijken as (
    select area_code, arg_max(area_name, year) as area_name, max(year) as name_year
    from {{ ref('int_wijk_geometry') }}
    where area_name is not null
    group by area_code
),

official_gemeenten as (
    select gemeente_code, arg_max(gemeente_name, year) as gemeente_name, max(year) as name_year
    from {{ ref('int_wijk_geometry') }}
    where gemeente_name is not null
    group by gemeente_code
),

observed as (
    select
        area_code,
        any_value(area_level) as area_level,
        arg_max(area_name, layout_year * 10000 + year) filter (where area_name is not null) as area_name,
        min(year) as first_year,
        max(year) as last_year,
        list_sort(list(distinct layout_year)) as layout_years,
        string_agg(distinct source, ', ' order by source) as sources
    from named
    group by area_code
),

parents as (
    select distinct wijk_code as area_code from named where wijk_code is not null
    union
    select distinct gemeente_code from named where gemeente_code is not null
    union
    select 'NL00'
),

all_codes as (
    select
        p.area_code,
        coalesce(o.area_level, {{ area_level('p.area_code') }}) as area_level,
        o.area_name,
        o.first_year,
        o.last_year,
        o.layout_years,
        o.sources,
        (o.area_code is null) as derived_from_children
    from (select area_code from observed union select area_code from parents) as p
    left join observed as o using (area_code)
),

gemeente_names as (
    select
        gemeente_code,
        coalesce(
            arg_max(area_name, layout_year * 10000 + year) filter (where area_level = 'gemeente' and area_name is not null),
            arg_max(gemeente_name, layout_year * 10000 + year) filter (where gemeente_name is not null)
        ) as gemeente_name
    from named
    where gemeente_code is not null
    group by gemeente_code
),

seed_names as (
    select new_code as gemeente_code, any_value(new_name) as gemeente_name from {{ ref('gemeente_changes') }} group by 1
    union all
    select old_code, any_value(old_name) from {{ ref('gemeente_changes') }}
    where old_code not in (select new_code from {{ ref('gemeente_changes') }})
    group by 1
),

changes as (
    select
        code,
        string_agg(note_text, '; ' order by effective_date) as layout_note
    from (
        select old_code as code, effective_date,
               case change_type when 'split' then 'dissolved ' || effective_date || ', part to ' || new_code || ' ' || new_name
                    else 'merged ' || effective_date || ' into ' || new_code || ' ' || new_name end as note_text
        from {{ ref('gemeente_changes') }}
        union all
        select new_code, effective_date,
               case change_type when 'split' then 'received part of ' || old_code || ' ' || old_name || ' on ' || effective_date
                    else 'absorbed ' || old_code || ' ' || old_name || ' on ' || effective_date end
        from {{ ref('gemeente_changes') }}
        where new_code <> old_code
    )
    group by code
)

select
    a.area_code,
    a.area_level,
    case when a.area_level = 'land' then coalesce(a.area_name, 'Nederland')
         when a.area_level = 'gemeente' then coalesce(og.gemeente_name, g.gemeente_name, s.gemeente_name, a.area_name)
         when a.area_level = 'wijk' then coalesce(ow.area_name, a.area_name)
         else a.area_name end as area_name,
    case when a.area_level = 'gemeente' then og.name_year
         when a.area_level = 'wijk' then ow.name_year end as official_name_year,
    {{ wijk_code_of('a.area_code') }} as wijk_code,
    {{ gemeente_code_of('a.area_code') }} as gemeente_code,
    coalesce(og.gemeente_name, g.gemeente_name, s.gemeente_name) as gemeente_name,
    a.first_year,
    a.last_year,
    a.layout_years,
    a.sources,
    a.derived_from_children,
    concat_ws('; ',
        case when a.layout_years is not null
             then 'code present in layout(s) ' || array_to_string(a.layout_years, ', ') end,
        case when a.derived_from_children then 'derived from child codes, no source lists it' end,
        gc.layout_note,
        case when a.area_level in ('wijk', 'buurt') and gc2.layout_note is not null
             then 'gemeente ' || gc2.layout_note end
    ) as layout_note
from all_codes as a
left join gemeente_names as g on g.gemeente_code = {{ gemeente_code_of('a.area_code') }}
left join official_gemeenten as og on og.gemeente_code = {{ gemeente_code_of('a.area_code') }}
left join official_wijken as ow on ow.area_code = a.area_code
left join seed_names as s on s.gemeente_code = {{ gemeente_code_of('a.area_code') }}
left join changes as gc on gc.code = a.area_code
left join changes as gc2 on gc2.code = {{ gemeente_code_of('a.area_code') }}
