-- The documentation of fct_area_features' columns: one row per feature (= wide column) with its concept,
-- plain-English label, unit, source, CBS table id(s), the source measure keys it was read from, whether
-- it is sensitive, the years it has values for, and its coverage.
-- cell counts per measure from the compact cell table (integer key: fast), plus the wijk values
-- aggregated from buurten; then rolled up per feature with the measure map's metadata
with cell_stats as (
    select
        measure_id,
        count(*) as n_cells,
        count(value) as n_values,
        count(*) filter (where missing_reason = 'suppressed') as n_suppressed,
        count(*) filter (where missing_reason = 'not_published') as n_not_published,
        count(*) filter (where missing_reason = 'not_measured') as n_not_measured
    from {{ ref('stg_cells') }}
    group by measure_id
),

measure_stats as (
    select
        m.feature, m.concept, m.source, m.unit, m.kind, m.cbs_table_id, m.measure_key, m.release_year as year,
        c.n_cells, c.n_values, c.n_suppressed, c.n_not_published, c.n_not_measured,
        false as aggregated_from_buurt
    from {{ ref('stg_measure_map') }} as m
    join cell_stats as c using (measure_id)
    where m.mapping_status = 'mapped' and m.source <> 'leefbaarometer'
    union all
    select
        feature, any_value(concept), source, any_value(unit), any_value(kind), any_value(cbs_table_id),
        any_value(measure_key), year,
        count(*), count(value),
        count(*) filter (where missing_reason = 'suppressed'),
        count(*) filter (where missing_reason = 'not_published'),
        count(*) filter (where missing_reason = 'not_measured'),
        true
    from {{ ref('int_wijk_from_buurt') }}
    group by feature, source, year
),

levels as (
    select source, year, list_sort(list(distinct area_level)) as area_levels
    from {{ ref('int_area_names') }}
    group by all
),

per_feature as (
    select
        s.feature,
        any_value(s.concept) as concept,
        any_value(s.source) as source,
        any_value(s.unit) as unit,
        any_value(s.kind) as kind,
        coalesce(string_agg(distinct s.cbs_table_id, ', ' order by s.cbs_table_id), '') as cbs_table_ids,
        string_agg(distinct s.measure_key, ' | ' order by s.measure_key) as source_measure_keys,
        coalesce(list_sort(list(distinct s.year) filter (where s.n_values > 0)), []) as years_available,
        list_sort(list(distinct s.year)) as years_in_sources,
        list_sort(list_distinct(flatten(list(l.area_levels)))) as area_levels,
        sum(s.n_cells) as n_area_years,
        sum(s.n_values) as n_values,
        round(sum(s.n_values) / sum(s.n_cells), 4) as coverage,
        sum(s.n_suppressed) as n_suppressed,
        sum(s.n_not_published) as n_not_published,
        sum(s.n_not_measured) as n_not_measured,
        bool_or(s.aggregated_from_buurt) as has_values_aggregated_from_buurt
    from measure_stats as s
    left join levels as l on l.source = s.source and l.year = s.year
    group by s.feature
),

concepts as (
    select
        source, concept,
        any_value(label) as label,
        any_value(description) as description,
        bool_or(sensitive) as sensitive,
        any_value(denominator) as denominator
    from {{ ref('concept_map') }}
    group by source, concept
),

suffixes as (
    select source, coalesce(suffix, '') as suffix, any_value(description) as subgroup_description
    from {{ ref('subgroup_map') }}
    group by all
)

select
    p.feature,
    p.concept,
    c.label || case when s.suffix <> '' then ' (' || s.suffix || ')' else '' end as label,
    p.unit,
    p.kind,
    p.source,
    p.cbs_table_ids,
    p.source_measure_keys,
    coalesce(c.sensitive, false) as sensitive,
    c.description || case when s.suffix <> '' then ' Subgroup: ' || s.subgroup_description || '.' else '' end as description,
    c.denominator,
    p.years_available,
    p.years_in_sources,
    p.area_levels,
    p.n_area_years,
    p.n_values,
    p.coverage,
    p.n_suppressed,
    p.n_not_published,
    p.n_not_measured,
    p.has_values_aggregated_from_buurt
from per_feature as p
left join concepts as c on c.source = p.source and c.concept = p.concept
left join suffixes as s
  on s.source = p.source
 and s.suffix = case when p.feature = p.concept then '' else substr(p.feature, length(p.concept) + 3) end
order by p.source, p.feature
