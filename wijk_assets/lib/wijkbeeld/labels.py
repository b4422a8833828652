"""Dutch names of the indicators the pages show (the feature catalog's labels are English)."""

from __future__ import annotations

import re

OUTCOMES_NL = {
    "lbm": "Leefbaarometer totaalscore",
    "fys": "Fysieke omgeving",
    "onv": "Overlast en onveiligheid",
    "soc": "Sociale samenhang",
    "vrz": "Voorzieningen",
    "won": "Woningvoorraad",
}
DIMENSIONS = ("fys", "onv", "soc", "vrz", "won")

AGE_GROUPS_NL = {"18plus": "18 jaar en ouder", "18_64": "18–64 jaar", "65plus": "65 jaar en ouder"}

CONCEPTS_NL = {
    # RIVM/GGD Gezondheidsmonitor (CBS 50090NED)
    "pct_alcohol_drinkers": "drinkt alcohol",
    "pct_anxiety_depression_high_risk": "hoog risico op angststoornis of depressie",
    "pct_anxiety_depression_risk": "matig of hoog risico op angststoornis of depressie",
    "pct_chronic_condition": "één of meer langdurige aandoeningen",
    "pct_chronic_illness_and_limited": "langdurige ziekte en beperkt in activiteiten",
    "pct_control_over_own_life": "ervaart regie over het eigen leven",
    "pct_cycle_to_work_school": "fietst naar school of werk",
    "pct_education_high": "hoog opleidingsniveau",
    "pct_education_low": "laag opleidingsniveau",
    "pct_education_mid": "middelbaar opleidingsniveau",
    "pct_emotionally_lonely": "emotioneel eenzaam",
    "pct_excessive_drinkers": "overmatige drinker",
    "pct_good_health": "ervaren gezondheid goed of zeer goed",
    "pct_hard_to_make_ends_meet": "moeite met rondkomen",
    "pct_healthy_weight": "gezond gewicht",
    "pct_hearing_disability": "beperking in horen",
    "pct_heavy_drinkers": "zware drinker",
    "pct_high_stress": "(heel) veel stress",
    "pct_informal_carers": "mantelzorger",
    "pct_limited_by_health": "beperkt vanwege gezondheid",
    "pct_lonely": "eenzaam",
    "pct_meets_alcohol_guideline": "voldoet aan alcoholrichtlijn",
    "pct_meets_exercise_guideline": "voldoet aan beweegrichtlijn",
    "pct_mobility_disability": "beperking in bewegen",
    "pct_noise_nuisance_neighbours": "ernstige geluidhinder door buren",
    "pct_obese": "ernstig overgewicht (obesitas)",
    "pct_overweight": "overgewicht",
    "pct_physical_disability": "lichamelijke beperking",
    "pct_severely_limited_by_health": "ernstig beperkt vanwege gezondheid",
    "pct_severely_lonely": "ernstig eenzaam",
    "pct_smokers": "rookt",
    "pct_socially_lonely": "sociaal eenzaam",
    "pct_underweight": "ondergewicht",
    "pct_visual_disability": "beperking in zien",
    "pct_volunteers": "vrijwilligerswerk",
    "pct_walk_or_cycle_to_work_school": "loopt of fietst naar school of werk",
    "pct_walk_to_work_school": "loopt naar school of werk",
    "pct_weekly_sport": "sport wekelijks",
    # CBS Kerncijfers wijken en buurten
    "inhabitants": "aantal inwoners",
    "population_density": "bevolkingsdichtheid (inwoners per km²)",
    "pct_men": "aandeel mannen",
    "pct_women": "aandeel vrouwen",
    "dwellings": "aantal woningen",
    "avg_woz_value": "gemiddelde WOZ-waarde",
    "avg_household_size": "gemiddelde huishoudensgrootte",
    "pct_social_housing": "aandeel corporatiewoningen",
    "pct_rented_homes": "aandeel huurwoningen",
    "pct_owner_occupied_homes": "aandeel koopwoningen",
    "pct_single_person_households": "aandeel eenpersoonshuishoudens",
    "pct_households_with_children": "aandeel huishoudens met kinderen",
    "pct_social_assistance": "aandeel inwoners met bijstand",
    "pct_unemployment_benefit": "aandeel inwoners met WW",
    "pct_disability_benefit": "aandeel inwoners met arbeidsongeschiktheidsuitkering",
    "pct_state_pension": "aandeel inwoners met AOW",
    "pct_age_0_14": "aandeel 0–14 jaar",
    "pct_age_15_24": "aandeel 15–24 jaar",
    "pct_age_25_44": "aandeel 25–44 jaar",
    "pct_age_45_64": "aandeel 45–64 jaar",
    "pct_age_65_plus": "aandeel 65 jaar en ouder",
    "address_density": "omgevingsadressendichtheid",
    "ses_woa_score": "sociaaleconomische status (SES-WOA)",
}

# CBS Nabijheid voorzieningen: afstand tot ... (km)
FACILITIES_NL = {
    "cafe": "café", "cafeteria": "cafetaria", "cinema": "bioscoop", "daily_food_shop": "winkel dagelijkse levensmiddelen",
    "daycare": "kinderdagverblijf", "department_store": "warenhuis", "fire_station": "brandweerkazerne",
    "forest": "bos", "gp_post": "huisartsenpost", "gp_practice": "huisartsenpraktijk",
    "havo_vwo_school": "school voor havo/vwo", "hospital_incl_outpatient": "ziekenhuis (incl. buitenpolikliniek)",
    "hospital": "ziekenhuis", "hotel": "hotel", "large_supermarket": "grote supermarkt", "library": "bibliotheek",
    "main_road": "oprit hoofdverkeersweg", "museum": "museum", "out_of_school_care": "buitenschoolse opvang",
    "park": "park", "performing_arts": "podiumkunsten", "pharmacy": "apotheek", "physiotherapist": "fysiotherapeut",
    "primary_school": "basisschool", "public_green": "openbaar groen", "restaurant": "restaurant",
    "secondary_school": "school voortgezet onderwijs", "sports_field": "sportterrein", "swimming_pool": "zwembad",
    "train_station": "treinstation", "transfer_station": "overstapstation", "vmbo_school": "school voor vmbo",
    "youth_health_centre": "consultatiebureau",
}

# Health-monitor concepts by the direction that is favourable for residents' health (for the overview's
# signals; concepts in neither set - drinking at all, informal care, education, commuting - are not signals).
HIGHER_IS_BETTER = frozenset({
    "pct_good_health", "pct_healthy_weight", "pct_meets_alcohol_guideline", "pct_meets_exercise_guideline",
    "pct_control_over_own_life", "pct_weekly_sport", "pct_volunteers",
})
HIGHER_IS_WORSE = frozenset({
    "pct_anxiety_depression_high_risk", "pct_anxiety_depression_risk", "pct_chronic_condition",
    "pct_chronic_illness_and_limited", "pct_emotionally_lonely", "pct_excessive_drinkers",
    "pct_hard_to_make_ends_meet", "pct_hearing_disability", "pct_heavy_drinkers", "pct_high_stress",
    "pct_limited_by_health", "pct_lonely", "pct_mobility_disability", "pct_noise_nuisance_neighbours",
    "pct_obese", "pct_overweight", "pct_physical_disability", "pct_severely_limited_by_health",
    "pct_severely_lonely", "pct_smokers", "pct_socially_lonely", "pct_underweight", "pct_visual_disability",
})

_AGGREGATES_NL = {
    "bu_max": "hoogste buurtwaarde in de wijk van",
    "bu_min": "laagste buurtwaarde in de wijk van",
    "bu_sd": "spreiding tussen de buurten van",
    "bu_mean": "gemiddelde van de buurten van",
    "gm": "gemeentewaarde van",
}


def feature_label_nl(feature: str) -> str:
    """``bu_max__pct_obese__65plus`` -> 'hoogste buurtwaarde in de wijk van: ernstig overgewicht
    (obesitas), 65 jaar en ouder'. Unknown concepts keep their code (never an English sentence)."""
    prefix = ""
    parts = feature.split("__")
    if len(parts) > 1 and parts[0] in _AGGREGATES_NL:
        prefix = _AGGREGATES_NL[parts[0]] + ": "
        parts = parts[1:]
    concept = parts[0]
    group = parts[1] if len(parts) > 1 else None
    label = CONCEPTS_NL.get(concept)
    if label is None:
        match = re.fullmatch(r"dist_(.+)_km", concept)
        label = f"afstand tot {FACILITIES_NL[match.group(1)]} (km)" if match and match.group(1) in FACILITIES_NL else concept
    if group:
        label += f", {AGE_GROUPS_NL.get(group, group)}"
    return prefix + label
