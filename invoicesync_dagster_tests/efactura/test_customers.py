"""Merging a buyer's identity: precedence of the sources, classification, business signs."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from invoicesync_dagster.efactura.customers import (
    Classification,
    RegistryFacts,
    RegistryStatus,
    Source,
    StripeAddress,
    StripeCustomer,
    business_signals,
    company_marker,
    county_from_state,
    cui_to_look_up,
    merge_profile,
    tax_id_entries,
)
from invoicesync_dagster.efactura.mappings import CustomerMapping

ACME, BETA, GAMMA = "4221306", "12345674", "8486152"  # valid CUIs
BAD = "12345678"  # check digit should be 4
ON = date(2026, 7, 1)


def customer(
    *,
    name: str | None = "Popescu & Fiii S.R.L.",
    country: str | None = "RO",
    tax_ids: list[tuple[str, str]] = (),  # type: ignore[assignment]
    **metadata: str,
) -> StripeCustomer:
    raw: dict[str, Any] = {
        "id": "cus_1",
        "object": "customer",
        "name": name,
        "email": "Office@Popescu.ro",
        "address": {"line1": "Str. Lungă 1", "city": "Cluj-Napoca", "state": "Cluj",
                    "postal_code": "400001", "country": country} if country else None,
        "metadata": metadata,
        "tax_ids": {"object": "list", "data": [{"type": t, "value": v} for t, v in tax_ids]},
    }  # fmt: skip
    return StripeCustomer.from_stripe(raw)


def mapping(tax_id: str, kind: str = "cui") -> CustomerMapping:
    return CustomerMapping(
        email="office@popescu.ro", tax_id=tax_id, kind=kind, file="customers.csv", line=7
    )  # type: ignore[arg-type]


def found(cui: str, **fields: Any) -> RegistryFacts:
    defaults: dict[str, Any] = {
        "name": "POPESCU & FIII SRL",
        "registration_number": "J12/1/2015",
        "street": "Str. Exemplu",
        "street_number": "7",
        "locality": "Mun. Cluj-Napoca",
        "county_code": "RO-CJ",
        "postal_code": "400335",
        "vat_payer": True,
        "vat_registered_on": date(2015, 3, 1),
        "efactura_registered": True,
        "queried_date": ON,
    }
    return RegistryFacts(cui=cui, **{**defaults, **fields})


# -- precedence -------------------------------------------------------------------------------


def test_the_mappings_csv_wins_over_tax_ids_and_metadata() -> None:
    buyer = customer(tax_ids=[("eu_vat", f"RO{BETA}")], cui=GAMMA)
    assert cui_to_look_up(buyer, mapping(ACME)) == ACME

    profile = merge_profile(buyer, mapping(ACME), found(ACME))

    assert (profile.cui, profile.cui_source, profile.cui_valid) == (ACME, Source.MAPPINGS_CSV, True)
    assert profile.notes == [
        f"CUI 'RO{BETA}' from Stripe tax id eu_vat not used: customers.csv line 7 takes precedence",
        f"CUI '{GAMMA}' from Stripe metadata.cui not used: customers.csv line 7 takes precedence",
    ]


def test_tax_ids_win_over_metadata_and_metadata_is_the_last_resort() -> None:
    both = customer(tax_ids=[("eu_vat", f"RO {BETA}")], cif=f"RO{GAMMA}")
    assert merge_profile(both).cui_source is Source.STRIPE_TAX_ID
    assert merge_profile(both).cui == BETA

    only_metadata = customer(cif=f"RO{GAMMA}")
    profile = merge_profile(only_metadata)
    assert (profile.cui, profile.cui_source) == (GAMMA, Source.STRIPE_METADATA)
    assert profile.notes == []


def test_the_same_cui_in_several_sources_is_no_conflict() -> None:
    profile = merge_profile(customer(tax_ids=[("eu_vat", f"RO{ACME}")], cui=ACME), mapping(ACME))
    assert profile.cui_source is Source.MAPPINGS_CSV and profile.notes == []


def test_the_registry_gives_name_address_county_and_flags() -> None:
    profile = merge_profile(customer(cui=ACME), None, found(ACME, inactive=True))

    assert profile.registry_status is RegistryStatus.FOUND
    assert (profile.legal_name, profile.legal_name_source) == (
        "POPESCU & FIII SRL", Source.ANAF_REGISTRY,
    )  # fmt: skip
    assert (profile.street, profile.city, profile.county_code, profile.postal_code) == (
        "Str. Exemplu 7", "Mun. Cluj-Napoca", "RO-CJ", "400335",
    )  # fmt: skip
    assert profile.address_source is Source.ANAF_REGISTRY
    assert (profile.registration_number, profile.registration_number_source) == (
        "J12/1/2015", Source.ANAF_REGISTRY,
    )  # fmt: skip
    assert profile.vat_payer and profile.efactura_registered and profile.inactive
    assert profile.vat_registered_on == date(2015, 3, 1)
    assert profile.registry_queried_on == ON
    assert not profile.submission_blocked  # inactive warns, it does not block


def test_without_registry_data_stripe_fills_in_name_and_address() -> None:
    profile = merge_profile(customer(cui=ACME, reg_com="J12/99/2020"))

    assert profile.registry_status is RegistryStatus.NOT_ASKED
    assert (profile.legal_name, profile.legal_name_source) == (
        "Popescu & Fiii S.R.L.", Source.STRIPE_CUSTOMER,
    )  # fmt: skip
    assert (profile.street, profile.city, profile.county_code) == (
        "Str. Lungă 1", "Cluj-Napoca", "RO-CJ",
    )  # fmt: skip
    assert profile.address_source is Source.STRIPE_CUSTOMER
    assert (profile.registration_number, profile.registration_number_source) == (
        "J12/99/2020", Source.STRIPE_METADATA,
    )  # fmt: skip
    assert profile.vat_payer is None and profile.inactive is None


@pytest.mark.parametrize(
    ("city", "state", "expected_city"),
    [
        ("București", "Sector 3", "Sector 3"),
        ("Bucuresti", "sectorul 6", "Sector 6"),
        ("Sector 2", "Sector 2", "Sector 2"),
        ("Sector 4", "București", "Sector 4"),
    ],
)
def test_a_bucharest_sector_typed_as_the_state_becomes_the_city(
    city: str, state: str, expected_city: str
) -> None:
    raw = customer(cui=ACME).model_copy(
        update={"address": StripeAddress(line1="Calea Victoriei 1", city=city, state=state,
                                         country="RO")}
    )  # fmt: skip

    profile = merge_profile(raw)

    assert (profile.city, profile.county_code) == (expected_city, "RO-B")


def test_a_registry_answer_about_another_cui_is_ignored() -> None:
    profile = merge_profile(customer(cui=ACME), None, found(BETA))
    assert profile.registry_status is RegistryStatus.NOT_ASKED
    assert profile.legal_name_source is Source.STRIPE_CUSTOMER


# -- blocking ---------------------------------------------------------------------------------


def test_a_failing_check_digit_blocks_and_says_where_to_fix_it() -> None:
    buyer = customer(tax_ids=[("eu_vat", f"RO{BAD}")], cui=ACME)
    assert cui_to_look_up(buyer, None) is None  # nothing to ask the registry

    profile = merge_profile(buyer)

    assert profile.classification is Classification.RO_COMPANY
    assert (profile.cui, profile.cui_valid) == (BAD, False)
    assert profile.submission_blocked and profile.invalid_cui
    assert profile.block_reason is not None
    assert "fails the check digit" in profile.block_reason
    assert "Stripe tax id eu_vat" in profile.block_reason and "Tax IDs" in profile.block_reason
    # the precedence holds: a valid CUI lower down is noted, not used
    assert profile.notes == [
        f"CUI '{ACME}' from Stripe metadata.cui not used: Stripe tax id eu_vat takes precedence"
    ]


def test_a_cui_unknown_to_the_registry_blocks() -> None:
    profile = merge_profile(
        customer(), mapping(ACME), RegistryFacts(cui=ACME, found=False, queried_date=ON)
    )
    assert profile.registry_status is RegistryStatus.NOT_FOUND
    assert profile.submission_blocked and profile.invalid_cui
    assert profile.block_reason is not None
    assert "does not know CUI 4221306" in profile.block_reason
    assert "correct line 7 of customers.csv" in profile.block_reason
    assert profile.legal_name_source is Source.STRIPE_CUSTOMER


def test_a_malformed_metadata_cui_blocks() -> None:
    profile = merge_profile(customer(cui="RO12A45"))
    assert profile.cui_valid is False and profile.submission_blocked
    assert profile.block_reason is not None and "metadata.cui" in profile.block_reason


# -- classification ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("buyer", "expected"),
    [
        (customer(cui=ACME), Classification.RO_COMPANY),
        (customer(name="Ștefan Țurcanu", cnp="1800101123450"), Classification.RO_PERSON),
        (customer(name="Mihăiță Bălan"), Classification.RO_PERSON),
        (
            customer(name="Müller & Söhne GmbH", country="DE", tax_ids=[("eu_vat", "DE123456789")]),
            Classification.EU_BUSINESS,
        ),
        (customer(name="Jean Dupont", country="FR"), Classification.UNKNOWN),
        (customer(name="Acme Widgets, Inc.", country="US"), Classification.NON_EU),
        (
            customer(name="Thames & Partners Ltd", country="GB", tax_ids=[("gb_vat", "GB1")]),
            Classification.NON_EU,
        ),
        (customer(name="Fermele Bărăganului S.R.L."), Classification.UNKNOWN),
        (customer(name="Ion Pop", country=None), Classification.UNKNOWN),
    ],
)
def test_every_classification(buyer: StripeCustomer, expected: Classification) -> None:
    assert merge_profile(buyer).classification is expected


def test_a_person_gets_a_valid_cnp_or_the_b2c_placeholder() -> None:
    with_cnp = merge_profile(customer(name="Ion Pop", cnp="1800101123450"))
    assert (with_cnp.cnp, with_cnp.cnp_source) == ("1800101123450", Source.STRIPE_METADATA)

    from_csv = merge_profile(customer(name="Ion Pop"), mapping("1800101123450", "cnp"))
    assert (from_csv.cnp, from_csv.cnp_source) == ("1800101123450", Source.MAPPINGS_CSV)

    mistyped = merge_profile(customer(name="Ion Pop", cnp="1800101123456"))
    assert (mistyped.cnp, mistyped.cnp_source) == ("0000000000000", Source.B2C_PLACEHOLDER)
    assert "check digit" in mistyped.notes[0]
    assert not mistyped.submission_blocked

    anonymous = merge_profile(customer(name="Ion Pop"))
    assert (anonymous.cnp, anonymous.cnp_source) == ("0000000000000", Source.B2C_PLACEHOLDER)
    assert anonymous.classification_reason == "Romanian private buyer"


def test_an_eu_business_keeps_its_vat_number_with_its_source() -> None:
    profile = merge_profile(
        customer(name="Rossi & Figli S.r.l.", country="IT", tax_ids=[("eu_vat", "IT12345678901")])
    )
    assert (profile.vat_number, profile.vat_number_source) == (
        "IT12345678901", Source.STRIPE_TAX_ID,
    )  # fmt: skip
    assert profile.county_code is None  # counties are for Romanian addresses only
    assert not profile.missing_cui


# -- looks like a business --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "marker"),
    [
        ("Popescu & Fiii S.R.L.", "SRL"),
        ("Făgăraș Energie S.R.L.-D.", "SRL"),
        ("Țesătoria Ardeleană S.A.", "SA"),
        ("PFA Ion Popescu", "PFA"),
        ("Müller & Söhne GmbH", "GMBH"),
        ("Thames & Partners Ltd", "LTD"),
        ("Acme Widgets, Inc.", "INC"),
        ('Van der Berg "Digitaal" B.V.', "BV"),
        ("Alpenblick AG", "AG"),
        ("Kowalski Sp. z o.o.", "SPZOO"),
        ("Asociația Prietenii Cărții", "ASOCIATIA"),
        ("Ștefan Țurcanu", None),
        ("Ana Sandu", None),
        ("Ag Ionescu", None),  # a short form only counts as the last word
        (None, None),
    ],
)
def test_company_markers(name: str | None, marker: str | None) -> None:
    assert company_marker(name) == marker


def test_business_signals_name_every_reason() -> None:
    buyer = StripeCustomer.from_stripe(
        {
            "id": "cus_1",
            "name": "Ion Pop",
            "business_name": "Pop Consult",
            "metadata": {"vat_number": "RO4221306"},
            "tax_ids": {"data": [{"type": "ro_tin", "value": "1800101123450"}]},
        }
    )
    invoice_ids = tax_id_entries([{"type": "eu_vat", "value": "DE123456789"}])
    assert business_signals(buyer, invoice_ids) == [
        "Stripe business name 'Pop Consult'",
        "tax id eu_vat DE123456789",
        "metadata.vat_number RO4221306",
    ]  # a 13-digit ro_tin is a CNP: a person's id, no business sign
    assert business_signals(customer(name="Ion Pop")) == []


def test_a_business_without_a_cui_is_missing_one() -> None:
    profile = merge_profile(customer(name="Fermele Bărăganului S.R.L."))
    assert profile.missing_cui and not profile.invalid_cui and not profile.submission_blocked
    assert profile.cui is None and profile.cnp is None
    assert "mappings CSV" in profile.classification_reason


@pytest.mark.parametrize(
    ("state", "code"),
    [("CJ", "RO-CJ"), ("RO-cj", "RO-CJ"), ("Cluj", "RO-CJ"), ("București", "RO-B"),
     ("Bucuresti", "RO-B"), ("Timiș", "RO-TM"), ("Timis", "RO-TM"), ("Atlantis", None),
     (None, None)],
)  # fmt: skip
def test_county_from_stripe_state(state: str | None, code: str | None) -> None:
    assert county_from_state(state) == code
