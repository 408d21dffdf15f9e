"""One metered use of datasets: grants checked, the use charged, the use audited; every read path goes through it.

    use = MeteredUse(institution_id, ["card_transactions"], Mode.QUERY, action="query.job_download",
                     actor=by_client_id(client_id, institution_id), target=f"query_job:{job.pk}", request=request)
    grants = use.grants()                               # access.ensure per dataset (grant.denied on record)
    use.commit({"bytes_downloaded": n}, details)        # one transaction: charged all or none, `action` recorded
    use.give_back("bytes_downloaded", n, sent, details)  # a transfer cut short: the unsent part, `action_incomplete`

A refusal at any step (a grant, a quota, the caller's own check inside `commit`) is recorded
as `action` denied, with its code, unless the caller records refusals its own way
(`on_refused`). The record of the use is written in the charge's transaction and fails
closed: if it cannot be written, the charge is given back and the use is refused
(`audit_unavailable`), so nothing is used unaudited or charged unused.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping

from django.db import transaction
from django.utils import timezone

from access import metering
from access.service import Grant, ensure
from audit.models import Outcome
from audit.service import record
from vitamin.refusals import Kind, Refusal

log = logging.getLogger("vitamin.access")


class MeteredUse:
    def __init__(
        self,
        institution,
        datasets: Iterable,
        mode: str,
        *,
        action: str,
        actor: Mapping[str, str],
        target: str,
        request=None,
        on_refused: Callable[[Exception, dict], None] | None = None,
    ):
        self.institution = institution
        self.datasets = list(datasets)
        self.mode = mode
        self.action = action
        self.actor = dict(actor)
        self.target = target
        self.request = request
        self.on_refused = on_refused or self._record_refusal
        self._grants: list[Grant] | None = None
        self.charged_at = None  # when `commit` charged (a refund goes to that day's counter)

    def grants(self, details: dict | None = None) -> list[Grant]:
        """The grant of every dataset, checked now (once per use); a denial is recorded and raised."""
        if self._grants is None:
            try:
                self._grants = [
                    ensure(self.institution, dataset, self.mode, request=self.request) for dataset in self.datasets
                ]
            except Refusal as exc:
                self.on_refused(exc, dict(details or {}))
                raise
        return self._grants

    def commit(
        self,
        charges: Mapping[str, int] | Callable[[], Mapping[str, int]],
        details: dict,
        *,
        check: Callable[[], None] | None = None,
        hold: Callable[[list[Grant]], None] | None = None,
        charged: Callable[[], None] | None = None,
    ) -> list[Grant]:
        """Charge `charges` (daily metric → amount; 0 checks a metric is not already over) to every grant, and
        record `action` with `details`, in one transaction. `check` runs first (the caller's last word: a
        Refusal there is recorded like any other), and `charges` may be a function read after it; `hold`
        runs inside the transaction before the charge (concurrency leases), `charged` after it, before the
        record is written (nothing it starts may be used before this returns: the caller undoes it if this raises)."""
        grants = self.grants(details)
        if check is not None:
            try:
                check()
            except Exception as exc:
                if getattr(exc, "code", None) is not None:  # a Refusal, or an HTTP refusal of the caller's
                    self.on_refused(exc, details)
                raise
        uses: list = []
        recording = False  # the audit write is what runs (what failed, if anything raises now)
        try:
            with transaction.atomic():
                if hold is not None:
                    hold(grants)
                amounts = charges() if callable(charges) else charges
                uses = [(grant, metric, amount) for grant in grants for metric, amount in amounts.items()]
                self.charged_at = timezone.now()
                metering.charge_all(uses, now=self.charged_at)
                if charged is not None:
                    charged()
                # No savepoint of its own: a failed write ends this transaction, and rolls the charge back with it.
                recording = True
                record(
                    self.action,
                    target=self.target,
                    details=details,
                    request=self.request,
                    savepoint=False,
                    **self.actor,
                )
        except Refusal as exc:
            if exc.code != "audit_unavailable":  # the audit is what failed: there is nowhere to record it
                self.on_refused(exc, details)
            raise
        except Exception:  # noqa: BLE001 - whatever broke the audit write, the use must not happen unaudited
            if not recording:  # not the audit: the hold or the charge failed on its own
                raise
            log.exception("audit write failed; %s refused", self.action)
            if not metering.charges_roll_back():  # a quota backend outside the database is not rolled back
                for grant, metric, amount in uses:
                    if amount:
                        metering.refund(grant, metric, amount, now=self.charged_at)
            raise Refusal(
                "This cannot be recorded right now, so it was not done.",
                code="audit_unavailable",
                kind=Kind.UNAVAILABLE,
            ) from None
        return grants

    def give_back(self, metric: str, charged: int, used: int, details: Mapping) -> None:
        """After a committed use charged `charged` of `metric` in advance (a download, before its first byte)
        and then used only `used` of it (the client went away): give the rest back to every grant, recorded
        as `<action>_incomplete` with `details`, `bytes` (what was used), `charged` and `refunded`.

        Both in one transaction: if the record cannot be written, nothing is given back (the partner stays
        charged the whole; never a refund off the record). Runs after the response, so it never raises."""
        unused = charged - used
        if unused <= 0 or self._grants is None or self.charged_at is None:
            return
        try:
            with transaction.atomic():
                record(
                    f"{self.action}_incomplete",
                    target=self.target,
                    details={**details, "bytes": used, "charged": charged, "refunded": unused},
                    request=self.request,
                    savepoint=False,
                    **self.actor,
                )
                for grant in self._grants:
                    metering.refund(grant, metric, unused, now=self.charged_at)
        except Exception:  # noqa: BLE001 - after the response: logged, the charge stands
            log.exception("giving back %s of %s failed; the whole stays charged", metric, self.action)

    def _record_refusal(self, refusal, details: dict) -> None:
        ours = isinstance(refusal, Refusal) and refusal.kind.ours
        record(
            self.action,
            outcome=Outcome.FAILURE if ours else Outcome.DENIED,
            target=self.target,
            details={**details, "code": refusal.code},
            request=self.request,
            **self.actor,
        )
