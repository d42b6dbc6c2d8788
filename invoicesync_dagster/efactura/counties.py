"""Romanian counties as ISO 3166-2:RO codes, the only values CIUS-RO accepts (BR-RO-110/111).

The suffix is the vehicle-plate county code that ANAF's registry returns as `scod_JudetAuto`.
"""

from __future__ import annotations

COUNTY_NAMES: dict[str, str] = {
    "RO-AB": "Alba", "RO-AG": "Argeș", "RO-AR": "Arad", "RO-B": "București",
    "RO-BC": "Bacău", "RO-BH": "Bihor", "RO-BN": "Bistrița-Năsăud", "RO-BR": "Brăila",
    "RO-BT": "Botoșani", "RO-BV": "Brașov", "RO-BZ": "Buzău", "RO-CJ": "Cluj",
    "RO-CL": "Călărași", "RO-CS": "Caraș-Severin", "RO-CT": "Constanța", "RO-CV": "Covasna",
    "RO-DB": "Dâmbovița", "RO-DJ": "Dolj", "RO-GJ": "Gorj", "RO-GL": "Galați",
    "RO-GR": "Giurgiu", "RO-HD": "Hunedoara", "RO-HR": "Harghita", "RO-IF": "Ilfov",
    "RO-IL": "Ialomița", "RO-IS": "Iași", "RO-MH": "Mehedinți", "RO-MM": "Maramureș",
    "RO-MS": "Mureș", "RO-NT": "Neamț", "RO-OT": "Olt", "RO-PH": "Prahova",
    "RO-SB": "Sibiu", "RO-SJ": "Sălaj", "RO-SM": "Satu Mare", "RO-SV": "Suceava",
    "RO-TL": "Tulcea", "RO-TM": "Timiș", "RO-TR": "Teleorman", "RO-VL": "Vâlcea",
    "RO-VN": "Vrancea", "RO-VS": "Vaslui",
}  # fmt: skip

BUCHAREST = "RO-B"
BUCHAREST_SECTORS = tuple(f"SECTOR{n}" for n in range(1, 7))


def is_county_code(code: str) -> bool:
    return code in COUNTY_NAMES
