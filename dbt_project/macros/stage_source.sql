{#-
  stage_cells(source_name): raw.<source> (long, verbatim text) -> one compact row per mapped cell:
  (measure_id, area_code, value, missing_reason, source_row). measure_id points at stg_measure_map, which
  carries year, file, sha256, CBS table id, verbatim measure key, concept, feature and unit, so the 5M-row
  cell table stores no repeated text (DuckDB writes every text column of a big table slowly). The readable
  per-source models stg_<source> are views that join the two back together.

  value          cell text -> DOUBLE (padding stripped, comma decimal -> dot) * concept_map.scale; for a
                 concept with a `denominator` the value is 100 * numerator / denominator of the same area,
                 year, file and subgroup (counts -> shares).
  missing_reason NULL when a value exists, else
                   'not_measured'   empty cell (e.g. a 50090NED indicator not surveyed that year)
                   'suppressed'     '.'/'x' in a measure that has values elsewhere in the same file
                   'not_published'  '.' in EVERY cell of that measure in the file (the gemeente and land
                                    rows included, which CBS does not suppress): the figure does not exist
                                    (yet), e.g. income in the first release of a kwb year; not a privacy gap
                   'not_available'  'NA' (Leefbaarometer)
                   'not_applicable' share whose denominator is 0 (no inhabitants / households)
                   'unparseable'    any other text (a dbt test warns)
                 CBS '-' (nihil) is the number 0.
-#}
{% macro stage_cells(source_name) %}
select
    m.measure_id,
    m.denominator_measure_id,
    {{ clean_area_code('r.area_code') }} as area_code,
    case when trim(r.value_raw) in ('-', '–') then 0.0
         else {{ parse_number('r.value_raw') }} * m.scale end as value,
    case
        when r.value_raw is null or trim(r.value_raw) = '' then 'not_measured'
        when trim(r.value_raw) = 'NA' then 'not_available'
        when trim(r.value_raw) in ('.', 'x', 'X') then
            case when m.all_cells_suppressed then 'not_published' else 'suppressed' end
        when trim(r.value_raw) in ('-', '–') then null
        when {{ parse_number('r.value_raw') }} is null then 'unparseable'
    end as missing_reason,
    r.source_row
from {{ source('raw', source_name) }} as r
join {{ ref('stg_measure_map') }} as m
  on m.source = '{{ source_name }}'
 and m.mapping_status = 'mapped'
 and m.release_year = r.release_year
 and m.source_file = r.source_file
 and m.measure_key = r.measure_key
 and m.subgroup = coalesce(r.subgroup, '')
{% endmacro %}

{#- stg_<source>: the readable long staging view of one source. -#}
{% macro staged_view(source_name) %}
select
    m.source,
    m.release_year                      as year,
    c.area_code,
    {{ area_level('c.area_code') }}     as area_level,
    m.concept,
    m.feature,
    m.subgroup_suffix,
    c.value,
    c.missing_reason,
    m.unit,
    m.kind,
    m.cbs_table_id,
    m.source_file,
    m.source_sha256,
    c.source_row,
    m.measure_key,
    m.measure_id
from {{ ref('stg_cells') }} as c
join {{ ref('stg_measure_map') }} as m using (measure_id)
where m.source = '{{ source_name }}'
{% endmacro %}

{#- Every feature cell (all sources except the Leefbaarometer outcomes) in the long column layout of
    fct_area_feature_values: one pass over stg_cells joined to its measure map. -#}
{% macro feature_cells() %}
    select
        c.area_code,
        {{ area_level('c.area_code') }} as area_level,
        m.release_year as year,
        m.feature,
        m.concept,
        c.value,
        c.missing_reason,
        m.unit,
        m.kind,
        m.source,
        m.cbs_table_id,
        m.source_file,
        m.source_sha256,
        c.source_row,
        m.measure_key,
        false as aggregated_from_buurt,
        cast(null as integer) as n_buurten
    from {{ ref('stg_cells') }} as c
    join {{ ref('stg_measure_map') }} as m using (measure_id)
    where m.source in ({% for s in feature_sources() %}'{{ s }}'{% if not loop.last %}, {% endif %}{% endfor %})
{% endmacro %}
