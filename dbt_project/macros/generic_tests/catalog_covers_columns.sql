{#- Every column of a wide model (except `key_columns`) must be documented in the feature catalog.
    Columns may carry one of `prefixes` (gm__, bu_sd__, ...) before the feature name; `extra_columns`
    are columns documented in schema.yml instead. Returns the undocumented column names. -#}
{% test catalog_covers_columns(model, catalog, key_columns, prefixes=[], extra_columns=[]) %}
with cols as (
    select column_name
    from information_schema.columns
    where table_schema = '{{ model.schema }}' and table_name = '{{ model.identifier }}'
      and column_name not in ({% for c in key_columns + extra_columns %}'{{ c }}'{% if not loop.last %}, {% endif %}{% endfor %})
),

stripped as (
    select
        column_name,
        {% if prefixes %}
        case
            {% for p in prefixes %}
            when starts_with(column_name, '{{ p }}') then substr(column_name, {{ p | length + 1 }})
            {% endfor %}
            else column_name
        end as feature
        {% else %}
        column_name as feature
        {% endif %}
    from cols
)

select s.column_name
from stripped as s
where s.feature not in (select feature from {{ catalog }})
{% endtest %}
