-- Every area (land, gemeente, wijk, buurt) any source or layout uses, with its parents and names (the
-- official name of the latest wijk- en buurtkaart for every wijk and gemeente on it: official_name_year).
-- layout_note says which layouts (indeling years) use the code, whether it was only derived from child
-- codes, and gemeente mergers/dissolutions (seed gemeente_changes) that affect it.
select
    area_code,
    area_level,
    area_name,
    official_name_year,
    gemeente_code,
    gemeente_name,
    wijk_code,
    first_year,
    last_year,
    layout_years,
    sources,
    derived_from_children,
    layout_note
from {{ ref('int_area_hierarchy') }}
order by area_code
