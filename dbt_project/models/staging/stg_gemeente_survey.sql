-- raw.gemeente_survey (a municipality's own resident survey, aggregated per area label) -> one row per
-- file x area label x indicator x category x year: the percentage parsed, NULL with a missing_reason, the
-- row's number of respondents where the file has them, and the provenance of every figure.
--
-- Raw layout (wijk_assets/lib/sources/survey_csv.py): measure_key '<indicator>|<category>' for a percentage,
-- the respondents column's own header (no '|') for the row's respondent count; value_raw verbatim;
-- subgroup 'suppressed=too_few_respondents' marks a cell the reader blanked because the area had fewer
-- respondents than WIJK_MIN_RESPONDENTS (its figure was never stored).
--
-- missing_reason (the names of wijk_assets.lib.responsible.privacy):
--   too_few_respondents      suppressed by this project (minimum number of respondents)
--   suppressed_by_publisher  '.' in the file
--   empty_cell               nothing in the file
--   unparseable              any other text (the raw gate blocks it first; a dbt test warns)
--
-- The survey has no CBS codes: it is NOT a feature source (not in stg_cells, the feature table or the
-- training mart). When no survey file is configured (no raw.gemeente_survey table) this is an empty view,
-- so a municipality without a survey still builds.
{{ config(materialized='view') }}
{%- set raw_relation = source('raw', 'gemeente_survey') -%}
{%- set raw_exists = (load_relation(raw_relation) is not none) if execute else true %}

with raw as (
{%- if raw_exists %}
    select * from {{ raw_relation }}
{%- else %}
    select
        cast(null as integer) as release_year, cast(null as varchar) as area_code,
        cast(null as varchar) as area_name, cast(null as varchar) as region_type,
        cast(null as varchar) as gemeente_name, cast(null as varchar) as subgroup,
        cast(null as varchar) as measure_key, cast(null as varchar) as value_raw,
        cast(null as integer) as source_row, cast(null as varchar) as cbs_table_id,
        cast(null as varchar) as source_file, cast(null as varchar) as source_sha256,
        cast(null as timestamp) as retrieved_at, cast(null as varchar) as reader_version
    where false
{%- endif %}
),

respondents as (
    -- one respondent count per file line and year (the respondents column has no '|' in its key)
    select
        source_file,
        release_year,
        source_row,
        min(try_cast({{ parse_number('value_raw') }} as integer)) as n_respondents
    from raw
    where strpos(measure_key, '|') = 0
    group by all
),

cells as (
    select
        r.*,
        nullif(upper(trim(r.area_code)), '') as area_code_clean,
        coalesce(r.subgroup, '') = 'suppressed=too_few_respondents' as too_few_respondents,
        {{ parse_number('r.value_raw') }} as parsed
    from raw as r
    where strpos(r.measure_key, '|') > 0
)

select
    'gemeente_survey'                                      as source,
    split_part(c.source_file, '/', 1)                      as survey,
    c.release_year                                         as year,
    trim(c.area_name)                                      as area_label,
    c.area_code_clean                                      as area_code,
    coalesce(lower(nullif(trim(c.region_type), '')), {{ area_level('c.area_code_clean') }}) as area_level,
    split_part(c.measure_key, '|', 1)                      as indicator,
    substr(c.measure_key, strpos(c.measure_key, '|') + 1)  as category,
    case when c.too_few_respondents then null else c.parsed end as value_pct,
    case
        when c.too_few_respondents then 'too_few_respondents'
        when c.value_raw is null or trim(c.value_raw) = '' then 'empty_cell'
        when trim(c.value_raw) = '.' then 'suppressed_by_publisher'
        when c.parsed is null then 'unparseable'
    end                                                    as missing_reason,
    n.n_respondents,
    c.value_raw,
    c.measure_key,
    c.source_file,
    c.source_sha256,
    c.source_row,
    c.retrieved_at,
    c.reader_version
from cells as c
left join respondents as n
  on n.source_file = c.source_file and n.release_year = c.release_year and n.source_row = c.source_row
