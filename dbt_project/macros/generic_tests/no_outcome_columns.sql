{#- Target-leakage guard: a column named after a Leefbaarometer outcome (concept_map kind 'outcome':
    lbm, afw, fys, onv, soc, vrz, won), bare or inside a feature name (gm__lbm, lbm_lag, ...), is only
    allowed when it is one of `allowed` (the outcome columns themselves). Returns offending columns. -#}
{% test no_outcome_columns(model, allowed=[]) %}
with outcome_names as (
    select distinct concept from {{ ref('concept_map') }} where kind = 'outcome'
),

cols as (
    select column_name
    from information_schema.columns
    where table_schema = '{{ model.schema }}' and table_name = '{{ model.identifier }}'
)

select c.column_name, o.concept
from cols as c
join outcome_names as o
  on c.column_name = o.concept
  or regexp_matches(c.column_name, '(^|_)' || o.concept || '($|_)')
where c.column_name not in ({% for a in allowed %}'{{ a }}'{% if not loop.last %}, {% endif %}{% endfor %}{% if not allowed %}''{% endif %})
{% endtest %}
