-- Measures present in the raw tables that the concept map does not cover (or whose subgroup has no
-- suffix in subgroup_map). They are left out of staging; this list makes a new or renamed CBS key visible.
-- Keys mapped with kind 'ignore' (identifier columns such as Codering_3) are deliberately not listed.
select
    source,
    release_year as year,
    measure_key,
    subgroup,
    source_file,
    cbs_table_id,
    mapping_status as reason,
    n_rows,
    n_non_empty,
    n_non_empty - n_suppressed_marks as n_with_number
from {{ ref('stg_measure_map') }}
where mapping_status in ('no_concept', 'unknown_subgroup')
