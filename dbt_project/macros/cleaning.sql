{#- Small SQL helpers shared by the staging and intermediate models. -#}

{# The five raw tables (Dagster assets raw/<source>); leefbaarometer holds outcomes, the rest features. #}
{% macro raw_sources() -%}
    {{ return(['rivm_gezondheid', 'leefbaarometer', 'cbs_kwb', 'cbs_nabijheid', 'cbs_ses_woa']) }}
{%- endmacro %}

{% macro feature_sources() -%}
    {{ return(['rivm_gezondheid', 'cbs_kwb', 'cbs_nabijheid', 'cbs_ses_woa']) }}
{%- endmacro %}

{# CBS region code without padding. Country codes differ per table (NL00 in most, NL01 in 50090NED): one
   land code, NL00, so the country is one area. The verbatim code stays in area_code_raw. #}
{% macro clean_area_code(expr) -%}
    case when upper(trim({{ expr }})) like 'NL%' then 'NL00' else upper(trim({{ expr }})) end
{%- endmacro %}

{# Area level from the prefix of a CLEAN code (see clean_area_code): NL land, GM gemeente, WK wijk,
   BU buurt. #}
{% macro area_level(code) -%}
    case left({{ code }}, 2)
        when 'NL' then 'land' when 'GM' then 'gemeente' when 'WK' then 'wijk' when 'BU' then 'buurt'
    end
{%- endmacro %}

{# Parent codes from the code structure BU gggg ww bb -> WK gggg ww -> GM gggg. #}
{% macro wijk_code_of(code) -%}
    case left({{ code }}, 2) when 'BU' then 'WK' || substr({{ code }}, 3, 6) when 'WK' then {{ code }} end
{%- endmacro %}

{% macro gemeente_code_of(code) -%}
    case when left({{ code }}, 2) in ('BU', 'WK', 'GM') then 'GM' || substr({{ code }}, 3, 4) end
{%- endmacro %}

{# Measure keys are matched after normalising the path separator ('|' in the transposed StatLine export,
   '/' in the wide export) and runs of white space ('Binnen 10  km'); the map keeps the key verbatim. #}
{% macro measure_key_norm(expr) -%}
    regexp_replace(replace(trim({{ expr }}), '|', '/'), '\s+', ' ', 'g')
{%- endmacro %}

{# OData keys carry a positional suffix that changes between releases (AantalInwoners_5). The rule (which
   keys are OData keys, what their stem is) lives in dbt_project.yml var odata_key_pattern, the one home
   Python's key_stem reads too; kwb short names such as a_00_14 are verbatim. #}
{% macro measure_key_stem(expr) -%}
    case when regexp_full_match(trim({{ expr }}), '{{ var("odata_key_pattern") }}')
         then regexp_extract(trim({{ expr }}), '{{ var("odata_key_pattern") }}', 1) else trim({{ expr }}) end
{%- endmacro %}

{# Cell text -> number. Strips padding, accepts a comma decimal ('1,0') and exponents ('9.1e-4');
   with both '.' and ',' the dot is a thousands separator. NULL when the text is not a number. #}
{% macro parse_number(expr) -%}
    try_cast(
        case when trim({{ expr }}) like '%,%' and trim({{ expr }}) like '%.%'
             then replace(replace(trim({{ expr }}), '.', ''), ',', '.')
             else replace(trim({{ expr }}), ',', '.') end
        as double)
{%- endmacro %}

{# Name key for matching areas by name: case, accents, punctuation and a 'Wijk 01 ' prefix ignored. #}
{% macro name_key(expr) -%}
    regexp_replace(regexp_replace(strip_accents(lower(trim({{ expr }}))), '^wijk\s*[0-9]+\s*', ''), '[^a-z0-9]', '', 'g')
{%- endmacro %}

{# Sensitive concepts the operator opted in to (comma separated, env WIJK_SENSITIVE_OPT_IN, as in
   wijk_assets.settings); used by the training mart. #}
{% macro sensitive_opt_in_list() -%}
    {%- set raw = env_var('WIJK_SENSITIVE_OPT_IN', '') -%}
    {%- set items = [] -%}
    {%- for item in raw.split(',') if item.strip() -%}
        {%- do items.append("'" ~ item.strip() | replace("'", "''") ~ "'") -%}
    {%- endfor -%}
    {{- items | join(', ') if items else "''" -}}
{%- endmacro %}

{# Text as space-separated lowercase words without accents, for whole-word containment tests. #}
{% macro words(expr) -%}
    ' ' || trim(regexp_replace(strip_accents(lower({{ expr }})), '[^a-z0-9]+', ' ', 'g')) || ' '
{%- endmacro %}
