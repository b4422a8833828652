-- One row per source x release year x file x verbatim measure key x subgroup found in the raw tables,
-- with the concept-map row it resolves to (or why it does not). The concept map (seed) is matched on
--   1. the normalised key itself (kwb short names, StatLine label paths, full OData keys), else
--   2. the OData key stem (positional suffix removed: MoeiteMetRondkomen_38 -> MoeiteMetRondkomen),
-- within the row's year_from..year_to (NULL = open). A new CBS year therefore needs a seed row at most.
with raw_keys as (
    {% for s in raw_sources() %}
    select
        '{{ s }}' as source,
        release_year,
        source_file,
        any_value(cbs_table_id) as cbs_table_id,
        any_value(source_sha256) as source_sha256,
        measure_key,
        coalesce(subgroup, '') as subgroup,
        count(*) as n_rows,
        count(*) filter (where value_raw is not null and trim(value_raw) <> '') as n_non_empty,
        count(*) filter (where trim(value_raw) in ('.', 'x', 'X')) as n_suppressed_marks
    from {{ source('raw', s) }}
    group by all
    {% if not loop.last %}union all{% endif %}
    {% endfor %}
),

keys as (
    select
        *,
        {{ measure_key_norm('measure_key') }} as key_norm,
        {{ measure_key_stem('measure_key') }} as key_stem
    from raw_keys
),

concept_map as (
    select *, {{ measure_key_norm('measure_key_stem') }} as stem_norm
    from {{ ref('concept_map') }}
),

candidates as (
    select
        k.source, k.release_year, k.source_file, k.measure_key, k.subgroup,
        c.concept, c.label, c.unit, c.scale, c.kind, c.sensitive, c.denominator, c.measure_key_stem,
        case when c.stem_norm = k.key_norm then 1 else 2 end as match_priority
    from keys as k
    join concept_map as c
      on c.source = k.source
     and (c.stem_norm = k.key_norm or c.measure_key_stem = k.key_stem)
     and k.release_year between coalesce(c.year_from, 0) and coalesce(c.year_to, 9999)
),

best as (
    select
        *,
        count(*) over (
            partition by source, release_year, source_file, measure_key, subgroup, match_priority
        ) as n_candidates_same_priority
    from candidates
    qualify row_number() over (
        partition by source, release_year, source_file, measure_key, subgroup
        order by match_priority, concept
    ) = 1
),

subgroups as (
    select source, coalesce(subgroup, '') as subgroup, coalesce(suffix, '') as suffix
    from {{ ref('subgroup_map') }}
),

mapped as (
select
    k.source,
    k.release_year,
    k.source_file,
    k.cbs_table_id,
    k.source_sha256,
    k.measure_key,
    k.subgroup,
    b.measure_key_stem as concept_map_key,
    case b.match_priority when 1 then 'key' when 2 then 'stem' end as matched_on,
    b.concept,
    case
        when b.concept is null or s.source is null then null
        when s.suffix = '' then b.concept
        else b.concept || '__' || s.suffix
    end as feature,
    s.suffix as subgroup_suffix,
    b.label,
    b.unit,
    coalesce(b.scale, 1.0) as scale,
    b.kind,
    coalesce(b.sensitive, false) as sensitive,
    b.denominator,
    coalesce(b.n_candidates_same_priority, 0) as n_concept_candidates,
    k.n_rows,
    k.n_non_empty,
    k.n_suppressed_marks,
    (k.n_suppressed_marks = k.n_rows) as all_cells_suppressed,
    case
        when b.concept is null then 'no_concept'
        when b.kind = 'ignore' then 'ignored'
        when s.source is null then 'unknown_subgroup'
        else 'mapped'
    end as mapping_status
from keys as k
left join best as b
  on b.source = k.source and b.release_year = k.release_year and b.source_file = k.source_file
 and b.measure_key = k.measure_key and b.subgroup = k.subgroup
left join subgroups as s
  on s.source = k.source and s.subgroup = k.subgroup
),

numbered as (
    select
        row_number() over (order by source, release_year, source_file, measure_key, subgroup)::integer as measure_id,
        *
    from mapped
)

-- denominator_measure_id: the measure holding this share's denominator concept in the same file, year
-- and subgroup (e.g. a_inw for a_00_14).
select
    n.*,
    d.measure_id as denominator_measure_id
from numbered as n
left join numbered as d
  on n.denominator is not null
 and d.concept = n.denominator
 and d.mapping_status = 'mapped'
 and d.source = n.source and d.release_year = n.release_year
 and d.source_file = n.source_file and d.subgroup = n.subgroup
