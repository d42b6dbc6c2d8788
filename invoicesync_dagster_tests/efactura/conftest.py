"""The official offline validator (`../shared/efactura-validate`, next to the repository), loaded
once per test session: compiling its schematron takes 1-3 s, a document then ~10 ms.

It is imported from where it lives, never copied. `EFACTURA_VALIDATE_DIR` may point elsewhere.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from invoicesync_dagster.efactura.model import Document
from invoicesync_dagster.efactura.ubl import xml_bytes

REPO_ROOT = Path(__file__).resolve().parents[2]
VALIDATOR_DIR = Path(
    os.environ.get("EFACTURA_VALIDATE_DIR", REPO_ROOT.parent / "shared" / "efactura-validate")
)

Finding = dict[str, Any]


def _load_validator_module() -> ModuleType:
    script = VALIDATOR_DIR / "validate.py"
    if not script.is_file():
        pytest.fail(
            f"the official e-Factura validator is not at {VALIDATOR_DIR} (expected next to the "
            "repository, in ../shared/efactura-validate); set EFACTURA_VALIDATE_DIR to its folder"
        )
    # validate.py imports its sibling sch2xslt.py by name.
    if str(VALIDATOR_DIR) not in sys.path:
        sys.path.insert(0, str(VALIDATOR_DIR))
    spec = importlib.util.spec_from_file_location("efactura_validate", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def validator_dir() -> Path:
    return VALIDATOR_DIR


@pytest.fixture(scope="session")
def official_validator() -> Any:
    """`validate.Validator()`: the XSD, ANAF's CIUS-RO 1.0.9 schematron and CEN's EN 16931."""
    return _load_validator_module().Validator()


@pytest.fixture(scope="session")
def validate_official(
    official_validator: Any, tmp_path_factory: pytest.TempPathFactory
) -> Callable[[Document, str], list[Finding]]:
    """Write the document with our writer to a file and run the official validator on it."""
    folder = tmp_path_factory.mktemp("efactura-xml")

    def run(document: Document, name: str) -> list[Finding]:
        path = folder / f"{name}.xml"
        path.write_bytes(xml_bytes(document))
        return official_validator.validate(str(path))

    return run
