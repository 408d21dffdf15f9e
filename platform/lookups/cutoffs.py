"""The cut-off limit of threshold-only lookups: at most VITAMIN_LOOKUP_MAX_CUTOFFS_PER_DAY distinct cut-offs per
customer, field and institution per calendar day (VITAMIN_TIME_ZONE).

Asking "score >= 600?", then ">= 650?", then ">= 625?" narrows a value down as surely as
reading it; one or two cut-offs a day (a bank's products) reveal a band, not the value.
The caller counts a customer found by their primary key, whichever identifier named them
(no second budget by switching from resident ID to mobile number), and an identifier found
nowhere as sent: one identifier meets the same limit whether or not it exists. Repeating a
cut-off already used that day is always answered.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from django.conf import settings

from lookups.models import CutoffCheck


@dataclass
class CutoffPlan:
    refused: set[str]  # subjects over the limit: their items are refused
    new_rows: list[CutoffCheck]  # written with the batch, in its transaction


def plan_cutoffs(
    institution_id: int, dataset_id: int, field: str, cutoff: float, subjects: Iterable[str], day: date
) -> CutoffPlan:
    """Which of `subjects` may be compared with `cutoff` today, and the rows recording the new comparisons."""
    limit = settings.LOOKUP_MAX_CUTOFFS_PER_DAY
    wanted = set(subjects)
    used: dict[str, set[float]] = {}
    slots: dict[str, int] = {}
    rows = CutoffCheck.objects.filter(institution_id=institution_id, dataset_id=dataset_id, field=field, day=day)
    pending = sorted(wanted)
    for start in range(0, len(pending), 900):  # SQLite binds at most 999 parameters per statement
        chunk = pending[start : start + 900]
        for subject, value, slot in rows.filter(subject__in=chunk).values_list("subject", "cutoff", "slot"):
            used.setdefault(subject, set()).add(value)
            slots[subject] = max(slot, slots.get(subject, 0))
    refused, new_rows = set(), []
    for subject in pending:
        seen = used.get(subject, set())
        if cutoff in seen:
            continue
        if len(seen) >= limit:
            refused.add(subject)
            continue
        new_rows.append(
            CutoffCheck(
                institution_id=institution_id,
                dataset_id=dataset_id,
                field=field,
                subject=subject,
                day=day,
                cutoff=cutoff,
                slot=slots.get(subject, 0) + 1,
            )
        )
    return CutoffPlan(refused=refused, new_rows=new_rows)


def forget_before(day: date) -> int:
    """Delete cut-off checks of days before `day` (they no longer limit anything)."""
    deleted, _ = CutoffCheck.objects.filter(day__lt=day).delete()
    return deleted
