"""Customers from a dropped file: one row, one person.

A batch of rows is resolved against the identity index in one BatchGetItem, their known
profiles in one more, decided in memory (two rows of one person become one profile) and
written in one `TransactWriteItems` (up to 25 new or changed profiles with their identity
claims, so "one profile per person" still holds by condition). A batch that loses a race is
redone row by row through the ordinary upsert. The same rows again write nothing.
"""

from __future__ import annotations

from collections.abc import Iterator

from crm import clock
from crm.clock import now_iso
from crm.config import get_settings
from crm.domain import import_files
from crm.domain.customers import (
    ACTIVE,
    Customer,
    apply_profile,
    dropped_external_ids,
    new_customer,
    profile_state,
)
from crm.domain.errors import CrmError, ValidationFailed
from crm.domain.import_files import Row
from crm.observability import metrics
from crm.services.import_kinds import Outcome, Unit
from crm.services.profiles import new_customer_id, upsert_customer
from crm.store.customers import IdentityTaken, StaleProfile, get_customer_repository

# 25 x (1 profile + an external id, an email, a phone) = 100 items, the most one transaction
# takes; rows with more external ids are written in smaller groups (`_groups`).
BATCH_ROWS = 25
MAX_TRANSACTION_ITEMS = 100


def units(rows: Iterator[Row]) -> Iterator[Unit]:
    settings = get_settings()
    today = clock.now().date()
    for row in rows:
        if row.problem:
            yield Unit((row,), problem=row.problem)
            continue
        try:
            profile = import_files.customer_row(row, settings.default_country, today)
        except ValidationFailed as exc:
            yield Unit((row,), problem=import_files.failure_reason(exc))
            continue
        _count_dropped(profile.dropped_external_ids)
        yield Unit((row,), profile)


def _count_dropped(dropped: int) -> None:
    if dropped:
        metrics.add_metric(name="ExternalIdsDropped", unit="Count", value=dropped)


def _reason(error: CrmError) -> str:
    if isinstance(error, ValidationFailed):
        return import_files.failure_reason(error)
    return error.message


def write(batch: list[Unit]) -> list[Outcome]:
    """Each group of rows whose profiles and identities fit one transaction (`_groups`: the
    whole batch, unless rows carry many external ids) is written by `_write_group`."""
    results: list[Outcome] = []
    for group in _groups(batch):
        results += _write_group(group)
    return results


def _groups(batch: list[Unit]) -> Iterator[list[Unit]]:
    group: list[Unit] = []
    items = 0
    for unit in batch:
        need = 1 + len(unit.value.identity_keys().ordered())  # its profile and its claims
        if group and items + need > MAX_TRANSACTION_ITEMS:
            yield group
            group, items = [], 0
        group.append(unit)
        items += need
    if group:
        yield group


def _write_group(batch: list[Unit]) -> list[Outcome]:
    """Resolve the group's identities in one read, its known profiles in one more, decide every
    row in memory (two rows of one person become one profile), and write once."""
    repo = get_customer_repository()
    now = now_iso()
    keys = [k for unit in batch for k in unit.value.identity_keys().ordered()]
    owners = repo.resolve(keys)
    profiles = repo.get_many(set(owners.values()))
    pending: dict[str, Customer] = {}  # customer id -> the profile as this batch leaves it
    claims: dict[str, list[str]] = {}
    outcome: list[str] = []
    for unit in batch:
        data = unit.value
        row_keys = data.identity_keys().ordered()
        owner_ids = [owners[k] for k in row_keys if k in owners]
        owner = owner_ids[0] if owner_ids else None
        if owner is None:
            customer = apply_profile(new_customer(new_customer_id(), now), data, now, partial=False)
            pending[customer.customer_id] = customer
            claims[customer.customer_id] = row_keys
            for k in row_keys:
                owners[k] = customer.customer_id
            outcome.append("created")
            continue
        base = pending.get(owner) or profiles.get(owner)
        if base is None or base.status != ACTIVE:
            outcome.append("fallback")
            continue
        foreign = {k for k in row_keys if owners.get(k) not in (None, owner)}
        mine = data.without_identities(foreign)
        updated = apply_profile(base, mine, now, partial=False)
        _count_dropped(dropped_external_ids(updated, mine) - mine.dropped_external_ids)
        new_keys = [k for k in row_keys if k not in owners]
        if profile_state(updated) == profile_state(base) and not new_keys:
            outcome.append("unchanged")
            continue
        pending[owner] = updated
        claims[owner] = list(dict.fromkeys([*claims.get(owner, []), *new_keys]))
        for k in new_keys:
            owners[k] = owner
        outcome.append("updated")
    changes = [(c, claims.get(cid, [])) for cid, c in pending.items()]
    try:
        if changes:
            repo.save_many(changes, now)
    except (IdentityTaken, StaleProfile):
        # Someone wrote one of these people meanwhile: redo this batch row by row.
        metrics.add_metric(name="ImportBatchFallbacks", unit="Count", value=1)
        outcome = ["fallback"] * len(batch)
    results: list[Outcome] = []
    for unit, result in zip(batch, outcome, strict=True):
        if result != "fallback":
            results.append(Outcome(result))
            continue
        try:
            _, created = upsert_customer(unit.value, repo)
            results.append(Outcome("created" if created else "updated"))
        except CrmError as exc:
            results.append(Outcome("failed", _reason(exc)))
    return results
