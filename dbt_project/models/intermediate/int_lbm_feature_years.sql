-- Which features the training mart gives each Leefbaarometer wijk x outcome year: per feature source the
-- latest source year <= outcome year, at most var('max_feature_lag_years') (4) years older (DuckDB ASOF
-- JOIN), for
--   block 'own'       the wijk's own area in that source (int_area_code_harmonisation, matched rules only)
--   block 'gemeente'  the gemeente context (int_gemeente_crosswalk; several rows = merged predecessors)
-- Grain: lbm_wijk_code x outcome_year x block x source x target_area_code; combo_key identifies the whole
-- set of choices of the wijk-year. Wijk-years without any
-- source year in the window (e.g. outcome years 2002 and 2008) have no rows.
with spine as (
    select distinct area_code as lbm_wijk_code, gemeente_code as lbm_gemeente_code, year as outcome_year
    from {{ ref('int_area_names') }}
    where source = 'leefbaarometer' and area_level = 'wijk'
),

own_candidates as (
    select source, source_year, lbm_wijk_code, target_area_code, target_area_level, match_rule
    from {{ ref('int_area_code_harmonisation') }}
    where match_rule <> 'unmatched'
),

own_spine as (
    select s.*, c.source
    from spine as s
    join (select distinct lbm_wijk_code, source from own_candidates) as c using (lbm_wijk_code)
),

own as (
    select
        o.lbm_wijk_code, o.lbm_gemeente_code, o.outcome_year, 'own' as block, o.source,
        c.source_year, c.target_area_code, c.target_area_level, c.match_rule
    from own_spine as o
    asof join own_candidates as c
      on c.lbm_wijk_code = o.lbm_wijk_code
     and c.source = o.source
     and o.outcome_year >= c.source_year
    where o.outcome_year - c.source_year <= {{ var('max_feature_lag_years') }}
),

gm_years as (
    select distinct source, source_year, lbm_gemeente_code from {{ ref('int_gemeente_crosswalk') }}
),

gm_spine as (
    select s.*, g.source
    from spine as s
    join (select distinct lbm_gemeente_code, source from gm_years) as g using (lbm_gemeente_code)
),

gm_chosen as (
    select gs.*, gy.source_year
    from gm_spine as gs
    asof join gm_years as gy
      on gy.lbm_gemeente_code = gs.lbm_gemeente_code
     and gy.source = gs.source
     and gs.outcome_year >= gy.source_year
    where gs.outcome_year - gy.source_year <= {{ var('max_feature_lag_years') }}
),

gm as (
    select
        g.lbm_wijk_code, g.lbm_gemeente_code, g.outcome_year, 'gemeente' as block, g.source,
        g.source_year, x.target_gemeente_code as target_area_code, 'gemeente' as target_area_level, x.match_rule
    from gm_chosen as g
    join {{ ref('int_gemeente_crosswalk') }} as x
      on x.source = g.source and x.source_year = g.source_year and x.lbm_gemeente_code = g.lbm_gemeente_code
),

chosen as (
    select * from own
    union all
    select * from gm
),

-- combo_key: the full set of choices of a wijk-year as one string; wijk-years with the same choices
-- (outcome 2012 and 2014 both use 50090NED 2012; several 2022 wijken inside one 2020 wijk) share
-- their feature cells in the training mart
combos as (
    select
        lbm_wijk_code,
        outcome_year,
        string_agg(block || ':' || source || ':' || source_year || ':' || target_area_code, '|'
                   order by block, source, target_area_code) as combo_key
    from chosen
    group by all
)

-- combo_id: a small integer per distinct combo_key (the training mart pivots by it)
select c.*, k.combo_key, dense_rank() over (order by k.combo_key)::integer as combo_id
from chosen as c
join combos as k using (lbm_wijk_code, outcome_year)
