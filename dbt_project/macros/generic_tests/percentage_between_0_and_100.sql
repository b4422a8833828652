{#- Percentages must lie in [0, 100]: rows whose unit is '%' and whose value is outside that range.
    Catches a wrong scale (x 100 twice), a wrong denominator or a misread comma decimal. -#}
{% test percentage_between_0_and_100(model, column_name, unit_column='unit') %}
select *
from {{ model }}
where {{ unit_column }} = '%'
  and {{ column_name }} is not null
  and ({{ column_name }} < 0 or {{ column_name }} > 100)
{% endtest %}
