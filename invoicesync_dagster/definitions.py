"""The code location: everything under `defs/`, run in-process.

The in-process executor keeps a run's steps in one process, so the DuckDB file has one writer
and steps do not pay a subprocess start each (DAGSTER-NOTES §1.12).
"""

from __future__ import annotations

import dagster as dg

import invoicesync_dagster.defs


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions.merge(
        dg.components.load_defs(invoicesync_dagster.defs),
        dg.Definitions(executor=dg.in_process_executor),
    )
