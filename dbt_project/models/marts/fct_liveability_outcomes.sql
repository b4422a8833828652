-- Leefbaarometer 3.0 scores per wijk and year, in the Leefbaarometer's own 2022 wijk layout (codes are
-- the 2022 classification back-cast to 2002). lbm = absolute liveability score; afw = its deviation
-- from the national mean; fys/onv/soc/vrz/won = the five dimension scores (2014, 2018, 2020, 2022 only).
-- These are OUTCOMES: they never enter a feature table.
select
    area_code as wijk_code,
    {{ gemeente_code_of('area_code') }} as gemeente_code,
    year,
    max(value) filter (where feature = 'lbm') as lbm,
    max(value) filter (where feature = 'afw') as afw,
    max(value) filter (where feature = 'fys') as fys,
    max(value) filter (where feature = 'onv') as onv,
    max(value) filter (where feature = 'soc') as soc,
    max(value) filter (where feature = 'vrz') as vrz,
    max(value) filter (where feature = 'won') as won,
    -- min / arg_min rather than any_value: the same row whatever order the scan delivers (determinism).
    -- The sha256 is ordered by file name, then by itself: when partitions of one multi-year file were
    -- loaded from two versions of it, arg_min by file name alone tied and picked either.
    min(source_file) as source_file,
    arg_min(source_sha256, source_file || chr(0) || source_sha256) as source_sha256,
    min(source_row) as source_row
from {{ ref('stg_leefbaarometer') }}
group by all
order by wijk_code, year
