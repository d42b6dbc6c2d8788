"""The code location: everything under `defs/`, run in-process.

The in-process executor keeps a run's steps in one process, so the DuckDB file has one writer
and steps do not pay a subprocess start each (DAGSTER-NOTES §1.12).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import dagster as dg

# Dagster 1.13 rebuilds every sensor with `owners=` when it attaches resources to its job and
# then warns that the parameter is in beta, though no sensor here sets it: noise in every run.
warnings.filterwarnings(
    "ignore", message="Parameter `owners` of initializer `SensorDefinition", category=dg.BetaWarning
)


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions.merge(
        dg.load_from_defs_folder(path_within_project=Path(__file__).parent),
        dg.Definitions(executor=dg.in_process_executor),
    )
