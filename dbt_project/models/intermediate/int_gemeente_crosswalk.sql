-- Gemeente context for the Leefbaarometer gemeenten (2022 layout) in each feature source and year:
--   same_code            the source-year has the gemeente itself
--   merger_predecessor   the gemeente did not exist yet in the source's layout (seed gemeente_changes,
--                        change_type 'merger'); one row per former gemeente the source-year has. The
--                        training mart averages them (unweighted) as the gemeente context.
with lbm_gemeenten as (
    select distinct gemeente_code
    from {{ ref('int_area_names') }}
    where source = 'leefbaarometer' and gemeente_code is not null
),

src_gemeenten as (
    select distinct source, year, gemeente_code
    from {{ ref('int_area_names') }}
    where source <> 'leefbaarometer' and area_level = 'gemeente'
),

same_code as (
    select s.source, s.year as source_year, g.gemeente_code as lbm_gemeente_code,
           s.gemeente_code as target_gemeente_code, 'same_code' as match_rule
    from lbm_gemeenten as g
    join src_gemeenten as s on s.gemeente_code = g.gemeente_code
),

predecessors as (
    select s.source, s.year as source_year, c.new_code as lbm_gemeente_code,
           c.old_code as target_gemeente_code, 'merger_predecessor' as match_rule
    from {{ ref('gemeente_changes') }} as c
    join lbm_gemeenten as g on g.gemeente_code = c.new_code
    join src_gemeenten as s on s.gemeente_code = c.old_code
    where c.change_type = 'merger' and c.old_code <> c.new_code
      and not exists (select 1 from same_code as x
                      where x.source = s.source and x.source_year = s.year and x.lbm_gemeente_code = c.new_code)
)

select * from same_code
union all
select * from predecessors
