"""What every kind of import (customers, orders, inventory) hands the import loop.

A kind turns the file's rows into `Unit`s (a customer row, an order's rows, a stock row), each
validated or with the reason it cannot be, and writes a batch of valid units, answering one
`Outcome` per unit. The loop (crm/services/imports.py) does the rest: reading, batching,
checkpoints, the error file, the report.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from crm.domain.import_files import Row

CREATED, UPDATED, UNCHANGED, FAILED = "created", "updated", "unchanged", "failed"


@dataclass(frozen=True, slots=True)
class Unit:
    rows: tuple[Row, ...]  # the file rows it came from, first to last
    value: Any = None  # the validated thing to write
    problem: str | None = None  # why it cannot be imported; every row of it fails


@dataclass(frozen=True, slots=True)
class Outcome:
    result: str  # created | updated | unchanged | failed
    reason: str | None = None


@dataclass(frozen=True)
class Kind:
    name: str
    units: Callable[[Iterator[Row]], Iterator[Unit]]
    write: Callable[[list[Unit]], list[Outcome]]
    batch: int  # units per `write`
    # What a unit is called in the report when it is not a row ("orders"); counts per unit.
    unit_name: str | None = None
