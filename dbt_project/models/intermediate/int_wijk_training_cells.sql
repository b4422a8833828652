-- The training mart's feature cells in long form, before the pivot: one row per feature combination
-- (combo_id) x column. A combination is the set of (block, source, source year, target area) choices of
-- int_lbm_feature_years; wijk-years with the same choices (outcome 2012 and 2014 both use 50090NED
-- 2012) share one set of cells, so mart_wijk_training pivots fewer rows.
-- Columns: <feature> (own value), gm__<feature> (gemeente context, mean over merged predecessors),
-- bu_sd__/bu_min__/bu_max__<feature> (spread over the buurten of the wijk's source area), n_buurten.
-- Uses exactly the feature columns of the gated wide table fct_area_features (so Dagster's feature-table
-- check blocks everything downstream); sensitive features are left out unless their concept is listed in
-- WIJK_SENSITIVE_OPT_IN.
{{ config(tags=['after_feature_gate']) }}

with catalog as (
    select feature, source
    from {{ ref('feature_catalog') }}
    where not sensitive or concept in ({{ sensitive_opt_in_list() }})
),

-- the columns of the gated wide table fct_area_features (their values are read from its long form,
-- fct_area_feature_values, which is the same data unpivoted and has good statistics for the joins)
wide_columns as (
    select column_name as feature
    from information_schema.columns
    where table_schema = '{{ ref('fct_area_features').schema }}' and table_name = '{{ ref('fct_area_features').identifier }}'
),

feature_values as (
    select v.area_code, v.year, v.feature, v.value, v.source
    from {{ ref('fct_area_feature_values') }} as v
    where v.value is not null
      and v.area_level <> 'land'
      and v.feature in (select feature from catalog)
      and v.feature in (select feature from wide_columns)
),

choices as (
    select * from {{ ref('int_lbm_feature_years') }}
),

combo_choices as (
    select distinct combo_id, block, source, source_year, target_area_code, target_area_level
    from choices
),

own_targets as (
    select distinct source, source_year, target_area_code, target_area_level
    from combo_choices
    where block = 'own'
),

own_values as (
    select cc.combo_id, v.feature as column_name, v.value
    from combo_choices as cc
    join feature_values as v
      on cc.block = 'own' and v.source = cc.source and v.year = cc.source_year and v.area_code = cc.target_area_code
),

gemeente_values as (
    -- ordered mean: avg() over a parallel hash aggregate adds partial sums in varying order, which made
    -- two builds of the same data differ by ~1e-14 (and retrained every model); a sorted list is summed
    -- in one fixed order
    select cc.combo_id, 'gm__' || v.feature as column_name, list_avg(list_sort(list(v.value))) as value
    from combo_choices as cc
    join feature_values as v
      on cc.block = 'gemeente' and v.source = cc.source and v.year = cc.source_year and v.area_code = cc.target_area_code
    group by all
),

-- spread over the buurten of each own-block target: a wijk target's buurten (BU gggg ww ..), or all
-- buurten of a former gemeente that is the target (rules former_gemeente_*). Statistics are computed per
-- wijk for all buurten at once, then joined to the (few thousand) targets. The standard deviation is
-- taken over a sorted list, so it does not depend on the order rows reach the aggregate (determinism).
buurt_values as (
    select source, year, area_code, 'WK' || substr(area_code, 3, 6) as wijk_code,
           'GM' || substr(area_code, 3, 4) as gemeente_code, feature, value
    from feature_values
    where area_code like 'BU%'
),

wijk_stats as (
    select source, year, wijk_code as parent_code, feature,
           list_stddev_samp(list_sort(list(value))) as sd, min(value) as min_, max(value) as max_
    from buurt_values
    group by all
),

gemeente_stats as (
    select source, year, gemeente_code as parent_code, feature,
           list_stddev_samp(list_sort(list(value))) as sd, min(value) as min_, max(value) as max_
    from buurt_values
    where gemeente_code in (select target_area_code from own_targets where target_area_level = 'gemeente')
    group by all
),

buurt_stats as (
    select s.*, 'wijk' as parent_level from wijk_stats as s
    union all
    select s.*, 'gemeente' from gemeente_stats as s
),

-- number of buurten the source lists in the target area (from the code list, not the 3M values)
buurt_counts as (
    select source, year, wijk_code as parent_code, 'wijk' as parent_level, count(*) as n_buurten
    from {{ ref('int_area_names') }}
    where area_level = 'buurt'
    group by all
    union all
    select source, year, gemeente_code, 'gemeente', count(*)
    from {{ ref('int_area_names') }}
    where area_level = 'buurt'
    group by all
),

spread_values as (
    select cc.combo_id, unnest([
               {'column_name': 'bu_sd__' || b.feature, 'value': b.sd},
               {'column_name': 'bu_min__' || b.feature, 'value': b.min_},
               {'column_name': 'bu_max__' || b.feature, 'value': b.max_}
           ], recursive := true)
    from combo_choices as cc
    join buurt_stats as b
      on cc.block = 'own' and b.source = cc.source and b.year = cc.source_year
     and b.parent_code = cc.target_area_code and b.parent_level = cc.target_area_level
    union all
    select cc.combo_id, 'n_buurten' as column_name, max(n.n_buurten)::double as value
    from combo_choices as cc
    join buurt_counts as n
      on cc.block = 'own' and n.source = cc.source and n.year = cc.source_year
     and n.parent_code = cc.target_area_code and n.parent_level = cc.target_area_level
    group by all
),

long_values as (
    select * from own_values
    union all select * from gemeente_values
    union all select * from spread_values
)

select * from long_values
