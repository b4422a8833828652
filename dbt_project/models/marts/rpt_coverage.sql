-- Coverage report, one row per source x year plus one 'all_feature_sources' row (year NULL):
--   areas per level, how many sit in the area hierarchy with a known (listed, named) parent,
--   how the Leefbaarometer wijken in that source-year's gemeenten were harmonised (per rule), which remain
--   unmatched (listed), which source wijk codes have no Leefbaarometer counterpart (listed), and how many
--   Leefbaarometer wijk-years join to features.
-- The 'all_feature_sources' row compares the join of this project (any rule, any feature source) with a
-- quick join of the raw files (Leefbaarometer wk_code = a trimmed area code of any raw feature table),
-- both over all Leefbaarometer wijk-years, and gives the as-of join used by the training mart (feature
-- year at most var('max_feature_lag_years') before the outcome year) over the outcome years that have
-- any feature year in that window. Independent of mart_wijk_training (so it can run before the
-- feature-table gate).
with names as (
    select * from {{ ref('int_area_names') }}
),

hierarchy as (
    select * from {{ ref('int_area_hierarchy') }}
),

harm as (
    select * from {{ ref('int_area_code_harmonisation') }}
),

lbm_years as (
    select distinct area_code as lbm_wijk_code, year from names where source = 'leefbaarometer' and area_level = 'wijk'
),

areas as (
    select
        n.source,
        n.year,
        any_value(n.layout_year) as layout_year,
        count(*) as n_areas,
        count(*) filter (where n.area_level = 'land') as n_land,
        count(*) filter (where n.area_level = 'gemeente') as n_gemeenten,
        count(*) filter (where n.area_level = 'wijk') as n_wijken,
        count(*) filter (where n.area_level = 'buurt') as n_buurten,
        -- in the hierarchy: the area's gemeente is known by name and a buurt's wijk is listed by a source
        count(*) filter (where
            n.area_level = 'land'
            or (g.gemeente_name is not null and (n.area_level <> 'buurt' or not w.derived_from_children))
        ) as n_in_hierarchy
    from names as n
    left join hierarchy as g on g.area_code = n.gemeente_code
    left join hierarchy as w on w.area_code = n.wijk_code
    group by n.source, n.year
),

rules as (
    select
        source,
        source_year as year,
        count(*) as n_lbm_wijken_in_scope,
        count(*) filter (where match_rule = 'exact') as n_exact,
        count(*) filter (where match_rule = 'exact_code_and_name') as n_exact_code_and_name,
        count(*) filter (where rule_order between 2 and 5) as n_harmonised,
        count(*) filter (where match_rule = 'name_within_gemeente') as n_name_within_gemeente,
        count(*) filter (where match_rule = 'contained_in_sole_unmatched_wijk') as n_contained_in_sole_unmatched_wijk,
        count(*) filter (where match_rule = 'former_gemeente_name') as n_former_gemeente_name,
        count(*) filter (where match_rule = 'former_gemeente_in_name') as n_former_gemeente_in_name,
        count(*) filter (where match_rule = 'unmatched') as n_unmatched,
        count(*) filter (where unmatched_reason = 'code_reused_area_unproven') as n_unmatched_code_reused_area_unproven,
        string_agg(lbm_wijk_code || ' ' || coalesce(lbm_wijk_name, ''), '; ' order by lbm_wijk_code)
            filter (where match_rule = 'unmatched') as unmatched_lbm_wijken
    from harm
    group by source, source_year
),

lbm_codes as (
    select distinct lbm_wijk_code from lbm_years
),

source_only as (
    select
        source, year,
        count(distinct wijk_code) as n_source_wijken_not_in_leefbaarometer,
        string_agg(distinct wijk_code, '; ' order by wijk_code) as source_wijken_not_in_leefbaarometer
    from names
    where source <> 'leefbaarometer' and wijk_code is not null
      and wijk_code not in (select lbm_wijk_code from lbm_codes)
      and wijk_code not in (select target_area_code from harm where target_area_code is not null)
    group by source, year
),

joined as (
    select h.source, h.source_year as year, count(*) as lbm_wijk_years_joined
    from harm as h
    join lbm_years as l on l.lbm_wijk_code = h.lbm_wijk_code
    where h.match_rule <> 'unmatched'
    group by all
),

joined_asof as (
    select source, source_year as year, count(distinct lbm_wijk_code || outcome_year) as lbm_wijk_years_joined_asof
    from {{ ref('int_lbm_feature_years') }}
    where block = 'own'
    group by all
),

n_lbm as (
    select count(*) as lbm_wijk_years from lbm_years
),

per_source as (
    select
        a.source,
        a.year,
        a.layout_year,
        a.n_areas, a.n_land, a.n_gemeenten, a.n_wijken, a.n_buurten, a.n_in_hierarchy,
        r.n_lbm_wijken_in_scope, r.n_exact, r.n_exact_code_and_name, r.n_harmonised,
        r.n_name_within_gemeente, r.n_contained_in_sole_unmatched_wijk, r.n_former_gemeente_name,
        r.n_former_gemeente_in_name, r.n_unmatched, r.n_unmatched_code_reused_area_unproven, r.unmatched_lbm_wijken,
        s.n_source_wijken_not_in_leefbaarometer, s.source_wijken_not_in_leefbaarometer,
        n.lbm_wijk_years,
        j.lbm_wijk_years_joined,
        round(j.lbm_wijk_years_joined / n.lbm_wijk_years, 4) as lbm_join_fraction,
        ja.lbm_wijk_years_joined_asof,
        cast(null as bigint) as lbm_wijk_years_in_asof_window,
        cast(null as double) as lbm_join_fraction_asof,
        cast(null as bigint) as lbm_wijk_years_joined_raw_quick,
        cast(null as double) as raw_quick_join_fraction,
        cast(null as double) as lbm_join_fraction_excl_changed_codes
    from areas as a
    cross join n_lbm as n
    left join rules as r using (source, year)
    left join source_only as s using (source, year)
    left join joined as j using (source, year)
    left join joined_asof as ja using (source, year)
),

-- quick join of the raw files: Leefbaarometer wijk code = a trimmed code in any raw feature table
raw_codes as (
    {% for s in feature_sources() %}
    select distinct trim(area_code) as code from {{ source('raw', s) }}
    {% if not loop.last %}union{% endif %}
    {% endfor %}
),

raw_lbm as (
    select distinct release_year, trim(area_code) as code from {{ source('raw', 'leefbaarometer') }}
),

overall as (
    select
        'all_feature_sources' as source,
        cast(null as integer) as year,
        cast(null as integer) as layout_year,
        (select sum(n_areas) from areas where source <> 'leefbaarometer')::bigint as n_areas,
        cast(null as bigint) as n_land, cast(null as bigint) as n_gemeenten, cast(null as bigint) as n_wijken,
        cast(null as bigint) as n_buurten,
        (select sum(n_in_hierarchy) from areas where source <> 'leefbaarometer')::bigint as n_in_hierarchy,
        (select count(distinct lbm_wijk_code) from harm) as n_lbm_wijken_in_scope,
        (select count(distinct lbm_wijk_code) from harm where match_rule = 'exact') as n_exact,
        cast(null as bigint) as n_exact_code_and_name,
        cast(null as bigint) as n_harmonised, cast(null as bigint) as n_name_within_gemeente,
        cast(null as bigint) as n_contained_in_sole_unmatched_wijk, cast(null as bigint) as n_former_gemeente_name,
        cast(null as bigint) as n_former_gemeente_in_name,
        (select count(*) from lbm_codes where lbm_wijk_code not in
            (select lbm_wijk_code from harm where match_rule <> 'unmatched')) as n_unmatched,
        (select string_agg(lbm_wijk_code, '; ' order by lbm_wijk_code) from lbm_codes where lbm_wijk_code not in
            (select lbm_wijk_code from harm where match_rule <> 'unmatched')) as unmatched_lbm_wijken,
        cast(null as bigint) as n_source_wijken_not_in_leefbaarometer,
        cast(null as varchar) as source_wijken_not_in_leefbaarometer,
        n.lbm_wijk_years,
        (select count(*) from lbm_years where lbm_wijk_code in
            (select lbm_wijk_code from harm where match_rule <> 'unmatched')) as lbm_wijk_years_joined,
        round((select count(*) from lbm_years where lbm_wijk_code in
            (select lbm_wijk_code from harm where match_rule <> 'unmatched')) / n.lbm_wijk_years, 4) as lbm_join_fraction,
        (select count(distinct lbm_wijk_code || outcome_year) from {{ ref('int_lbm_feature_years') }}
            where block = 'own') as lbm_wijk_years_joined_asof,
        (select count(*) from lbm_years as l where exists (
            select 1 from (select distinct source_year from harm) as y
            where y.source_year <= l.year and l.year - y.source_year <= {{ var('max_feature_lag_years') }}))
            as lbm_wijk_years_in_asof_window,
        round((select count(distinct lbm_wijk_code || outcome_year) from {{ ref('int_lbm_feature_years') }} where block = 'own')
            / (select count(*) from lbm_years as l where exists (
                select 1 from (select distinct source_year from harm) as y
                where y.source_year <= l.year and l.year - y.source_year <= {{ var('max_feature_lag_years') }})), 4)
            as lbm_join_fraction_asof,
        (select count(*) from raw_lbm where code in (select code from raw_codes)) as lbm_wijk_years_joined_raw_quick,
        round((select count(*) from raw_lbm where code in (select code from raw_codes))
            / (select count(*) from raw_lbm), 4) as raw_quick_join_fraction,
        round((select count(*) from lbm_years where lbm_wijk_code in
            (select lbm_wijk_code from harm where match_rule not in ('unmatched', 'exact_code_and_name')))
            / n.lbm_wijk_years, 4) as lbm_join_fraction_excl_changed_codes
    from n_lbm as n
)

select * from per_source
union all by name
select * from overall
order by source, year
