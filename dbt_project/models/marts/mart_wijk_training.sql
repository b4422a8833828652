-- Training table for the liveability models: one row per Leefbaarometer wijk (2022 layout) x outcome year.
--   keys        area_code (the Leefbaarometer wijk), area_name, gemeente_code, outcome_year
--   feature_year / feature_year_min   newest / oldest source year used for the wijk's own features:
--               per source the latest year <= outcome_year, at most var('max_feature_lag_years') older
--               (ASOF JOIN in int_lbm_feature_years); NULL = no own features (e.g. 2002, 2008)
--   feature_sources, match_rules      per source: year and the harmonisation rule that linked the wijk
--   <feature>           the wijk's own value (columns of fct_area_features, documented in feature_catalog)
--   gm__<feature>       the gemeente's value (mean over the former gemeenten after a merger)
--   bu_sd__/bu_min__/bu_max__<feature>  spread over the buurten of the wijk's source area; n_buurten
--   lbm, fys, onv, soc, vrz, won        the OUTCOMES of that year (Leefbaarometer)
-- Built from the gated wide table fct_area_features (unpivoted), so Dagster's feature-table check
-- blocks this model. No Leefbaarometer value is ever a feature: fct_area_features holds none, and a dbt
-- test fails if any column other than the six outcomes carries a Leefbaarometer name. Sensitive features
-- (feature_catalog.sensitive) are left out unless their concept is listed in WIJK_SENSITIVE_OPT_IN.
-- Direct dependency on the gated table, so a failing blocking check on fct_area_features stops this model:
-- depends_on: {{ ref('fct_area_features') }}
{{ config(tags=['after_feature_gate']) }}

with choices as (
    select * from {{ ref('int_lbm_feature_years') }}
),

combos as (
    select distinct lbm_wijk_code, outcome_year, combo_id from choices
),

wide_pivot as (
    pivot {{ ref('int_wijk_training_cells') }}
    on column_name
    using first(value)
    group by combo_id
),

-- column order: n_buurten, own features, gm__ context, bu_sd__, bu_min__, bu_max__ (PIVOT sorts by name)
wide as (
    select
        combo_id,
        columns(lambda c: c = 'n_buurten'),
        columns(lambda c: c not in ('combo_id', 'n_buurten') and not starts_with(c, 'gm__') and not starts_with(c, 'bu_')),
        columns(lambda c: starts_with(c, 'gm__')),
        columns(lambda c: starts_with(c, 'bu_sd__')),
        columns(lambda c: starts_with(c, 'bu_min__')),
        columns(lambda c: starts_with(c, 'bu_max__'))
    from wide_pivot
),

meta as (
    select
        lbm_wijk_code,
        outcome_year,
        max(source_year) filter (where block = 'own') as feature_year,
        min(source_year) filter (where block = 'own') as feature_year_min,
        max(source_year) filter (where block = 'gemeente') as context_year,
        string_agg(distinct source || ':' || source_year, ', ' order by source || ':' || source_year)
            filter (where block = 'own') as feature_sources,
        string_agg(distinct source || ':' || match_rule, ', ' order by source || ':' || match_rule)
            filter (where block = 'own') as match_rules
    from choices
    group by all
),

outcomes as (
    select o.*, n.area_name
    from {{ ref('fct_liveability_outcomes') }} as o
    left join (select area_code, max(area_name) as area_name from {{ ref('int_area_names') }}
               where source = 'leefbaarometer' group by 1) as n on n.area_code = o.wijk_code
)

select
    o.wijk_code as area_code,
    o.area_name,
    o.gemeente_code,
    o.year as outcome_year,
    m.feature_year,
    m.feature_year_min,
    m.context_year,
    m.feature_sources,
    m.match_rules,
    w.* exclude (combo_id),
    o.lbm,
    o.fys,
    o.onv,
    o.soc,
    o.vrz,
    o.won
from outcomes as o
left join meta as m on m.lbm_wijk_code = o.wijk_code and m.outcome_year = o.year
left join combos as k on k.lbm_wijk_code = o.wijk_code and k.outcome_year = o.year
left join wide as w on w.combo_id = k.combo_id
-- explicit row order (the models also sort what they read): same data, same table row for row
order by o.wijk_code, o.year
