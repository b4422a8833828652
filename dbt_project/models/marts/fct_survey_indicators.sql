-- The municipality's own resident survey as a fact table: one row per survey (data folder) x area label x
-- indicator x category x year, with the percentage, why it is missing (suppression reason), the row's
-- number of respondents and the lineage of the figure (file, sha256, line, verbatim header).
-- Areas are the municipality's own labels (Utrecht: subwijken), not CBS codes, so this table stands apart
-- from the feature table and the training mart; it is for reporting next to them, not for the model.
select
    survey,
    year,
    area_label,
    area_code,
    area_level,
    indicator,
    category,
    value_pct,
    missing_reason,
    coalesce(missing_reason in ('too_few_respondents', 'suppressed_by_publisher'), false) as is_suppressed,
    n_respondents,
    measure_key,
    source_file,
    source_sha256,
    source_row,
    retrieved_at,
    reader_version
from {{ ref('stg_gemeente_survey') }}
