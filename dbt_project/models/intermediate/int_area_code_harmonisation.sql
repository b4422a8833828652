-- Crosswalk from every Leefbaarometer wijk (2022 layout, back-cast) to the area that carries its
-- features in each feature source and year (50090NED: 2020 layout; SES-WOA 2019; nabijheid 2021/2023;
-- kwb 2023). One row per source x source year x Leefbaarometer wijk whose gemeente (or a predecessor of
-- it, seed gemeente_changes) that source-year covers. Rules, applied in this order; a wijk takes the first
-- that gives exactly one target:
--   1 exact                         same wijk code, and the gemeente's wijk codes are the same set in
--                                   both layouts
--   1 exact_code_and_name           same wijk code in a gemeente that has codes on one side only (it was
--                                   re-divided), and the source names the wijk as the Leefbaarometer does
--                                   (name_key): the name shows it is the same area.
--     (no rule)                     same code in a re-divided gemeente WITHOUT such evidence: the code
--                                   is NOT reused. A re-divided gemeente reuses codes for other areas
--                                   (Almere WK003402 = a 22-buurt district of Almere Haven in 2020, the
--                                   small neighbourhood "De Werven" in 2022; GM1961 went from 11 to 39
--                                   wijken, GM1911 from 8 to 19), and the 50090NED health files carry
--                                   no names and the Leefbaarometer no buurten, so there is nothing to
--                                   show the area is the same. Such a wijk goes on to the rules below and
--                                   usually ends as unmatched with unmatched_reason
--                                   'code_reused_area_unproven' (counted in rpt_coverage).
--   2 name_within_gemeente          code differs; a source wijk in the same gemeente whose code the
--                                   Leefbaarometer lacks has the same name (case/accents/punctuation and
--                                   a 'Wijk 01' prefix ignored)
--   3 contained_in_sole_unmatched_wijk  code differs and the gemeente has exactly ONE source wijk the
--                                   Leefbaarometer lacks: a wijk split off later must lie inside it (given
--                                   that the matched wijken kept their area, so only where NO source wijk
--                                   of the gemeente had its code reused without evidence); features of the
--                                   larger old wijk, e.g. WK059000 Papendrecht (one wijk in 2020) for its
--                                   eight 2022 wijken
--   4 former_gemeente_name          the wijk's gemeente absorbed a gemeente (seed gemeente_changes) whose
--                                   name equals the wijk name: features of that former gemeente, e.g.
--                                   WK043908 Beemster -> GM0370 Beemster, WK198202 Grave -> GM0786
--   5 former_gemeente_in_name       as 4, but the former gemeente's name is a whole word of the wijk name
--                                   (WK197911 Appingedam-Centrum -> GM0003 Appingedam)
--   9 unmatched                     none of the above; listed in rpt_coverage, never dropped silently
with names as (
    select * from {{ ref('int_area_names') }}
),

lbm as (
    select
        area_code as lbm_wijk_code,
        arg_max(area_name, year) as lbm_wijk_name,
        any_value(gemeente_code) as lbm_gemeente_code
    from names
    where source = 'leefbaarometer' and area_level = 'wijk'
    group by area_code
),

-- wijk codes a source-year has, directly or as the parent of its buurten (int_wijk_from_buurt then
-- provides the values)
src_wijken as (
    select
        source, year, any_value(layout_year) as layout_year, wijk_code as area_code, any_value(gemeente_code) as gemeente_code,
        max(area_name) filter (where area_level = 'wijk') as area_name
    from names
    where source <> 'leefbaarometer' and wijk_code is not null
    group by source, year, wijk_code
),

src_gemeenten as (
    select distinct source, year, gemeente_code
    from names
    where source <> 'leefbaarometer' and gemeente_code is not null
),

changes as (
    select * from {{ ref('gemeente_changes') }} where old_code <> new_code
),

-- former gemeenten of a Leefbaarometer gemeente that the source-year covers
predecessors as (
    select c.new_code, c.old_code, c.old_name, g.source, g.year
    from changes as c
    join src_gemeenten as g on g.gemeente_code = c.old_code
),

scope as (
    select sy.source, sy.year, l.*
    from (select distinct source, year from src_gemeenten) as sy
    cross join lbm as l
    where exists (
            select 1 from src_gemeenten as g
            where g.source = sy.source and g.year = sy.year and g.gemeente_code = l.lbm_gemeente_code)
       or exists (
            select 1 from predecessors as p
            where p.source = sy.source and p.year = sy.year and p.new_code = l.lbm_gemeente_code)
),

src_only as (
    select w.*
    from src_wijken as w
    where not exists (select 1 from lbm as l where l.lbm_wijk_code = w.area_code)
),

lbm_only_counts as (
    select s.source, s.year, s.lbm_gemeente_code as gemeente_code, count(*) as n_lbm_only
    from scope as s
    where not exists (
        select 1 from src_wijken as w
        where w.source = s.source and w.year = s.year and w.area_code = s.lbm_wijk_code)
    group by all
),

src_only_counts as (
    select source, year, gemeente_code, count(*) as n_src_only from src_only group by all
),

-- every Leefbaarometer wijk whose code the source-year has, with the evidence that it is the same area
same_code as (
    select
        s.source, s.year, s.lbm_wijk_code, s.lbm_gemeente_code, w.area_code as target_area_code,
        coalesce(lo.n_lbm_only, 0) = 0 and coalesce(so.n_src_only, 0) = 0 as gemeente_unchanged,
        w.area_name is not null and {{ name_key('w.area_name') }} = {{ name_key('s.lbm_wijk_name') }} as same_name
    from scope as s
    join src_wijken as w on w.source = s.source and w.year = s.year and w.area_code = s.lbm_wijk_code
    left join lbm_only_counts as lo
      on lo.source = s.source and lo.year = s.year and lo.gemeente_code = s.lbm_gemeente_code
    left join src_only_counts as so
      on so.source = s.source and so.year = s.year and so.gemeente_code = s.lbm_gemeente_code
),

r1_exact as (
    select
        source, year, lbm_wijk_code, target_area_code, 'wijk' as target_area_level,
        case when gemeente_unchanged then 'exact' else 'exact_code_and_name' end as match_rule,
        1 as rule_order
    from same_code
    where gemeente_unchanged or same_name
),

-- codes reused in a re-divided gemeente without evidence that the area is the same
code_unproven as (
    select source, year, lbm_wijk_code, lbm_gemeente_code from same_code
    where not gemeente_unchanged and not same_name
),

unproven_counts as (
    select source, year, lbm_gemeente_code as gemeente_code, count(*) as n_unproven from code_unproven group by all
),

rest1 as (
    select s.* from scope as s
    where not exists (select 1 from r1_exact as m
                      where m.source = s.source and m.year = s.year and m.lbm_wijk_code = s.lbm_wijk_code)
),

r2_name as (
    select
        r.source, r.year, r.lbm_wijk_code, o.area_code as target_area_code, 'wijk' as target_area_level,
        'name_within_gemeente' as match_rule, 2 as rule_order
    from rest1 as r
    join src_only as o
      on o.source = r.source and o.year = r.year and o.gemeente_code = r.lbm_gemeente_code
     and o.area_name is not null
     and {{ name_key('o.area_name') }} = {{ name_key('r.lbm_wijk_name') }}
    qualify count(*) over (partition by r.source, r.year, r.lbm_wijk_code) = 1
),

rest2 as (
    select r.* from rest1 as r
    where not exists (select 1 from r2_name as m
                      where m.source = r.source and m.year = r.year and m.lbm_wijk_code = r.lbm_wijk_code)
),

src_only_unclaimed as (
    select o.* from src_only as o
    where not exists (select 1 from r2_name as m
                      where m.source = o.source and m.year = o.year and m.target_area_code = o.area_code)
),

r3_sole as (
    select
        r.source, r.year, r.lbm_wijk_code, u.area_code as target_area_code, 'wijk' as target_area_level,
        'contained_in_sole_unmatched_wijk' as match_rule, 3 as rule_order
    from rest2 as r
    join src_only_unclaimed as u
      on u.source = r.source and u.year = r.year and u.gemeente_code = r.lbm_gemeente_code
    where not exists (
        select 1 from unproven_counts as c
        where c.source = r.source and c.year = r.year and c.gemeente_code = r.lbm_gemeente_code)
    qualify count(*) over (partition by r.source, r.year, r.lbm_wijk_code) = 1
),

rest3 as (
    select r.* from rest2 as r
    where not exists (select 1 from r3_sole as m
                      where m.source = r.source and m.year = r.year and m.lbm_wijk_code = r.lbm_wijk_code)
),

r4_former_name as (
    select
        r.source, r.year, r.lbm_wijk_code, p.old_code as target_area_code, 'gemeente' as target_area_level,
        'former_gemeente_name' as match_rule, 4 as rule_order
    from rest3 as r
    join predecessors as p
      on p.source = r.source and p.year = r.year and p.new_code = r.lbm_gemeente_code
     and {{ name_key('p.old_name') }} = {{ name_key('r.lbm_wijk_name') }}
    qualify count(*) over (partition by r.source, r.year, r.lbm_wijk_code) = 1
),

rest4 as (
    select r.* from rest3 as r
    where not exists (select 1 from r4_former_name as m
                      where m.source = r.source and m.year = r.year and m.lbm_wijk_code = r.lbm_wijk_code)
),

r5_former_in_name as (
    select
        r.source, r.year, r.lbm_wijk_code, p.old_code as target_area_code, 'gemeente' as target_area_level,
        'former_gemeente_in_name' as match_rule, 5 as rule_order
    from rest4 as r
    join predecessors as p
      on p.source = r.source and p.year = r.year and p.new_code = r.lbm_gemeente_code
     and {{ words('r.lbm_wijk_name') }} like '%' || {{ words('p.old_name') }} || '%'
    qualify count(*) over (partition by r.source, r.year, r.lbm_wijk_code) = 1
),

matched as (
    select * from r1_exact
    union all select * from r2_name
    union all select * from r3_sole
    union all select * from r4_former_name
    union all select * from r5_former_in_name
),

resolved as (
    select
        s.source, s.year, s.lbm_wijk_code, s.lbm_wijk_name, s.lbm_gemeente_code,
        m.target_area_code, m.target_area_level,
        coalesce(m.match_rule, 'unmatched') as match_rule,
        coalesce(m.rule_order, 9) as rule_order,
        case
            when m.match_rule is not null then null
            when u.lbm_wijk_code is not null then 'code_reused_area_unproven'
            else 'no_rule_applies'
        end as unmatched_reason
    from scope as s
    left join matched as m
      on m.source = s.source and m.year = s.year and m.lbm_wijk_code = s.lbm_wijk_code
    left join code_unproven as u
      on u.source = s.source and u.year = s.year and u.lbm_wijk_code = s.lbm_wijk_code
)

select
    r.source,
    r.year as source_year,
    coalesce(l.layout_year, r.year) as source_layout_year,
    r.lbm_wijk_code,
    r.lbm_wijk_name,
    r.lbm_gemeente_code,
    r.target_area_code,
    r.target_area_level,
    t.area_name as target_area_name,
    {{ gemeente_code_of('r.target_area_code') }} as target_gemeente_code,
    r.match_rule,
    r.rule_order,
    r.unmatched_reason
from resolved as r
left join {{ ref('source_layouts') }} as l
  on l.source = r.source and r.year between l.year_from and l.year_to
left join {{ ref('int_area_hierarchy') }} as t
  on t.area_code = r.target_area_code
