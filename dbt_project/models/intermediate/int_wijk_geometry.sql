-- One row per wijk and boundary year (raw.cbs_wijkgrenzen, CBS/Kadaster wijk- en buurtkaart via PDOK):
-- the boundary as GeoJSON text (WGS84 lon/lat, simplified for cartography) and the OFFICIAL names of
-- that year's layout (wijknaam, gemeentenaam), with provenance. Feeds dim_area's names and the spatial
-- neighbours (int_wijk_neighbours). Water and foreign wijken (codes ..99 without inhabitants, e.g.
-- WK003499 'Groot water', WK099899 'Buitenland') are kept: they are real features of the map.
select
    r.release_year                                 as year,
    {{ clean_area_code('r.area_code') }}           as area_code,
    'wijk'                                         as area_level,
    trim(any_value(r.area_name))                   as area_name,
    {{ gemeente_code_of(clean_area_code('r.area_code')) }} as gemeente_code,
    trim(any_value(r.gemeente_name))               as gemeente_name,
    max(r.value_raw) filter (where r.measure_key = 'geometry')     as geometry_geojson,
    max(trim(r.value_raw)) filter (where r.measure_key = 'gemeentecode') as gemeente_code_stated,
    any_value(r.source_file)                       as source_file,
    any_value(r.source_sha256)                     as source_sha256,
    any_value(r.source_row)                        as source_row
from {{ source('raw', 'cbs_wijkgrenzen') }} as r
group by r.release_year, {{ clean_area_code('r.area_code') }}
