"""Our XML against the official offline validator (XSD, ANAF's CIUS-RO 1.0.9 schematron, CEN's
EN 16931): every situation passes with no FATAL finding, and every broken document of
`test_rules.CASES` is rejected by the validator with the same rule id our rules report."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from invoicesync_dagster.efactura.model import Document
from invoicesync_dagster.efactura.rules import check
from invoicesync_dagster.efactura.vat import EXEMPTION_REASONS
from invoicesync_dagster_tests.efactura import samples
from invoicesync_dagster_tests.efactura.test_rules import CASES

Validate = Callable[[Document, str], list[dict[str, Any]]]

# Our own rules, and CIUS-RO rules the published schematron states but never fires (it tests
# the reason code for BR-RO-L1017, and the other three have contexts that cannot match or
# count one node at a time: see RULES-CIUS-RO-1.0.9.md, column "fires on").
NOT_IN_THE_OFFICIAL_VALIDATOR = {"BR-RO-L1017", "BR-RO-L1019", "BR-RO-A500", "BR-RO-A051"}


def failures(findings: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [f for f in findings if f["level"] in ("FATAL", "ERROR")]


def describe(findings: list[dict[str, Any]]) -> str:
    return "\n".join(
        f"  {f['level']} {f['rule']}: {f['message'][:240]} (at {f['location']})" for f in findings
    )


@pytest.mark.parametrize("situation", sorted(samples.SITUATIONS))
def test_every_situation_passes_the_official_validator(
    situation: str, validate_official: Validate
) -> None:
    document = samples.SITUATIONS[situation]()
    fatal = failures(validate_official(document, situation))
    assert fatal == [], f"{situation} rejected by the official validator:\n{describe(fatal)}"
    assert check(document, source=situation) == []


CROSS_CHECKED = [
    case
    for case in CASES
    if not case[0].startswith("IS-") and case[0] not in NOT_IN_THE_OFFICIAL_VALIDATOR
]


@pytest.mark.parametrize(
    ("rule", "field", "make"), CROSS_CHECKED, ids=[f"{c[0]}:{c[1]}" for c in CROSS_CHECKED]
)
def test_official_validator_agrees_with_local_rule(
    rule: str, field: str, make: Callable[[], Document], validate_official: Validate
) -> None:
    document = make()
    official = failures(validate_official(document, f"broken-{rule}"))
    assert rule in {f["rule"] for f in official}, (
        f"our rules report {rule} on {field}, the official validator does not; it says:\n"
        f"{describe(official) or '  nothing'}"
    )
    assert rule in {f.rule for f in check(document)}


def test_the_official_exemption_list_is_ours(validator_dir: Path) -> None:
    """BR-CL-22's code list in the validator's schematron equals vat.EXEMPTION_REASONS."""
    codes = validator_dir / "artifacts" / "cius-ro-1.0.9" / "codelist" / "EN16931-UBL-codes.sch"
    found = re.search(r"' (VATEX-EU-79-C [^']*) '", codes.read_text(encoding="utf-8"))
    assert found is not None
    assert set(found.group(1).split()) == set(EXEMPTION_REASONS)
