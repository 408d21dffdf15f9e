"""The one place a subscription changes: state machine, history row, audit event and email.

    requested ──approve──▶ approved ──revoke──▶ revoked
        │  ╲                  │ ╲
     reject cancel         expire cancel
        ▼    ▼                ▼   ▼
    rejected cancelled     expired cancelled

A rejected, expired or cancelled subscription can be requested again (the same
row goes back to `requested`); a revoked one cannot: only a platform admin can
reinstate it, with a direct `grant`. `grant` approves from any state (also
changing the terms of an approved subscription): it is the admin's and the
`grant_subscription` command's way in.

Every change runs in one transaction with the subscription row locked, so two
admins acting at once cannot both apply a change from the same state; the
audit event is part of that transaction (fail closed). An approved
subscription whose expiry has passed is expired first, whatever the action.
Illegal changes are refused (`invalid_transition`, a CONFLICT); bad input is INVALID.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import date, datetime, time, timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from access import emails
from access.models import QuotaPlan, Subscription, SubscriptionChange
from audit.actors import by_user
from audit.service import record
from catalog.models import Dataset, DatasetVersion
from datasets.query.limits import clean_overrides
from datasets.spec import MODES_BY_TIER
from institutions.models import Institution, InstitutionStatus
from vitamin.refusals import Kind, Refusal

S = Subscription.Status
NEW = None  # "no subscription yet", as a state a transition can start from

# Action → (states it may start from, state it leads to).
TRANSITIONS: dict[str, tuple[frozenset, str]] = {
    "request": (frozenset({NEW, S.REJECTED, S.EXPIRED, S.CANCELLED}), S.REQUESTED),
    "approve": (frozenset({S.REQUESTED}), S.APPROVED),
    "reject": (frozenset({S.REQUESTED}), S.REJECTED),
    "revoke": (frozenset({S.APPROVED}), S.REVOKED),
    "expire": (frozenset({S.APPROVED}), S.EXPIRED),
    "cancel": (frozenset({S.REQUESTED, S.APPROVED}), S.CANCELLED),
    "grant": (frozenset({NEW, *S.values}), S.APPROVED),
}
DEFAULT_TERM_DAYS = 365
PURPOSE_MAX_CHARS = 4000


def invalid_request(message: str, **details) -> Refusal:
    return Refusal(message, code="invalid_request", details=details or None)


def request_access(
    institution: Institution,
    dataset: Dataset,
    *,
    modes: Iterable[str],
    purpose: str,
    plan: QuotaPlan | None = None,
    by=None,
    request=None,
) -> Subscription:
    """A partner asks for access (new, or again after a rejection, expiry or cancellation)."""
    purpose = (purpose or "").strip()
    if not purpose:
        raise invalid_request("Say what the data will be used for: a purpose statement is required.")
    if len(purpose) > PURPOSE_MAX_CHARS:
        raise invalid_request(f"The purpose statement is longer than {PURPOSE_MAX_CHARS} characters.")
    modes = _checked_modes(dataset, modes)
    if plan is not None and not plan.is_offered:
        raise invalid_request(f"The plan {plan.name!r} is not offered; choose another.")
    if institution.status != InstitutionStatus.APPROVED:
        raise Refusal(
            f"{institution.legal_name} is not an approved institution.",
            code="institution_not_active",
            kind=Kind.FORBIDDEN,
        )
    if not dataset.is_active:
        raise Refusal(
            f"The dataset {dataset.slug} is no longer offered.", code="dataset_unavailable", kind=Kind.FORBIDDEN
        )
    with _first_writer_wins(), transaction.atomic():
        subscription = _locked_or_new(institution, dataset)
        _apply(
            subscription,
            "request",
            by=by,
            request=request,
            changes={
                "modes": modes,
                "purpose": purpose,
                "requested_plan": plan,
                "requested_by": by if _is_user(by) else None,
                "requested_at": timezone.now(),
                "decided_by": None,
                "decided_at": None,
                "reason": "",
            },
            details={"modes": modes, "requested_plan": plan.name if plan else None, "purpose": purpose},
        )
    return subscription


def approve(
    subscription: Subscription,
    *,
    plan: QuotaPlan,
    expires_at: datetime,
    pinned_version: DatasetVersion | None = None,
    modes: Iterable[str] | None = None,
    by=None,
    request=None,
) -> Subscription:
    """A platform admin approves a request: the plan, the expiry, optionally a pinned version and fewer modes."""
    with transaction.atomic():
        current = _locked(subscription)
        _set_terms(current, "approve", plan, expires_at, pinned_version, modes, by=by, request=request)
    subscription.refresh_from_db()
    return subscription


def grant(
    institution: Institution,
    dataset: Dataset,
    *,
    modes: Iterable[str],
    plan: QuotaPlan,
    expires_at: datetime,
    pinned_version: DatasetVersion | None = None,
    purpose: str = "",
    notify: bool = True,
    by=None,
    request=None,
) -> Subscription:
    """A platform admin grants access directly: automation, reinstatement, or new terms for an approved one.

    With `notify=False` the partner is not mailed (demo data)."""
    with _first_writer_wins(), transaction.atomic():
        subscription = _locked_or_new(institution, dataset)
        if purpose.strip() or not subscription.purpose:
            subscription.purpose = purpose.strip() or "Granted by a platform administrator."
        _set_terms(
            subscription, "grant", plan, expires_at, pinned_version, modes, by=by, request=request, notify=notify
        )
    return subscription


def reject(subscription: Subscription, *, reason: str, by=None, request=None) -> Subscription:
    return _close(subscription, "reject", reason=_required_reason(reason, "rejection"), by=by, request=request)


def revoke(subscription: Subscription, *, reason: str, by=None, request=None) -> Subscription:
    return _close(subscription, "revoke", reason=_required_reason(reason, "revocation"), by=by, request=request)


def cancel(subscription: Subscription, *, reason: str = "", by=None, request=None) -> Subscription:
    """The partner withdraws a request, or gives up an approved subscription (access ends at once)."""
    return _close(subscription, "cancel", reason=(reason or "").strip(), by=by, request=request)


def expire(subscription: Subscription, *, now: datetime | None = None) -> Subscription:
    """Mark an approved subscription whose expiry has passed as expired (the periodic task calls this)."""
    now = now or timezone.now()
    with transaction.atomic():
        current = (
            Subscription.objects.select_for_update().select_related("institution", "dataset").get(pk=subscription.pk)
        )
        if current.status == S.APPROVED and current.expires_at > now:
            raise Refusal(
                f"Subscription {current.pk} does not expire until {timezone.localtime(current.expires_at):%Y-%m-%d %H:%M}.",
                code="invalid_transition",
                kind=Kind.CONFLICT,
                details={"status": current.status, "action": "expire"},
            )
        _apply(current, "expire", by=None, request=None, changes={})
    subscription.refresh_from_db()
    return subscription


def set_limit_overrides(subscription: Subscription, overrides: dict, *, by=None, request=None) -> Subscription:
    """Replace a subscription's overrides of its plan's limits (effective from the next request)."""
    try:
        overrides = clean_overrides(overrides)
    except ValueError as exc:
        raise invalid_request(str(exc)) from None
    with transaction.atomic():
        current = Subscription.objects.select_for_update().select_related("dataset").get(pk=subscription.pk)
        before = current.limit_overrides
        current.limit_overrides = overrides
        current.save(update_fields=["limit_overrides", "updated_at"])
        _history_and_audit(
            current, "change_limits", current.status, by=by, request=request, details={"from": before, "to": overrides}
        )
    subscription.refresh_from_db()
    return subscription


def set_lookup_terms(
    subscription: Subscription, *, fields: list[str], threshold_only: bool, by=None, request=None
) -> Subscription:
    """Narrow what a lookup subscription answers (effective from the next request): `fields`, a subset of the
    dataset's lookup fields (empty: all of them), and whether it answers only Y/N against a cut-off."""
    spec = subscription.dataset.current_spec
    if spec.lookup is None:
        raise invalid_request(f"{subscription.dataset.slug} is not a lookup dataset.")
    fields = list(dict.fromkeys(fields))
    unknown = [name for name in fields if name not in spec.lookup.fields]
    if unknown:
        raise invalid_request(
            f"Not lookup fields of {subscription.dataset.slug}: {', '.join(unknown)}. "
            f"Known: {', '.join(spec.lookup.fields)}."
        )
    with transaction.atomic():
        current = Subscription.objects.select_for_update().select_related("dataset").get(pk=subscription.pk)
        before = {"fields": current.lookup_fields, "threshold_only": current.lookup_threshold_only}
        current.lookup_fields, current.lookup_threshold_only = fields, bool(threshold_only)
        current.save(update_fields=["lookup_fields", "lookup_threshold_only", "updated_at"])
        after = {"fields": fields, "threshold_only": bool(threshold_only)}
        _history_and_audit(
            current,
            "change_lookup_terms",
            current.status,
            by=by,
            request=request,
            details={"from": before, "to": after},
        )
    subscription.refresh_from_db()
    return subscription


def expiry_from_date(day: date) -> datetime:
    """Access granted "until `day`" lasts to the end of that day in the platform's time zone."""
    return datetime.combine(day + timedelta(days=1), time.min, tzinfo=timezone.get_default_timezone())


def default_expiry(now: datetime | None = None) -> datetime:
    return expiry_from_date(timezone.localdate(now or timezone.now()) + timedelta(days=DEFAULT_TERM_DAYS))


def can(subscription: Subscription, action: str) -> bool:
    """Whether the state machine allows `action` from the subscription's stored state (for buttons)."""
    return subscription.status in TRANSITIONS[action][0]


# --- internals ----------------------------------------------------------------------


def _set_terms(subscription, action, plan, expires_at, pinned_version, modes, *, by, request, notify=True) -> None:
    if plan is None:
        raise invalid_request("Choose a plan.")
    if expires_at is None or expires_at <= timezone.now():
        raise invalid_request("The expiry must be in the future.")
    if pinned_version is not None and (
        pinned_version.dataset_id != subscription.dataset_id or pinned_version.status != DatasetVersion.Status.PUBLISHED
    ):
        raise invalid_request("The pinned version must be a published version of the subscribed dataset.")
    chosen_modes = _checked_modes(subscription.dataset, modes if modes is not None else subscription.modes)
    _apply(
        subscription,
        action,
        by=by,
        request=request,
        changes={
            "plan": plan,
            "expires_at": expires_at,
            "pinned_version": pinned_version,
            "modes": chosen_modes,
            "decided_by": by if _is_user(by) else None,
            "decided_at": timezone.now(),
            "reason": "",
            "expiry_notice_sent_at": None,
        },
        details={
            "plan": plan.name,
            "expires_at": expires_at.isoformat(),
            "pinned_version": pinned_version.number if pinned_version else None,
            "modes": chosen_modes,
        },
    )
    if notify:
        transaction.on_commit(lambda: emails.send_decision(subscription))


def _close(subscription: Subscription, action: str, *, reason: str, by, request) -> Subscription:
    with transaction.atomic():
        current = _locked(subscription)
        _apply(
            current,
            action,
            by=by,
            request=request,
            changes={"reason": reason, "decided_by": by if _is_user(by) else None, "decided_at": timezone.now()},
            details={"reason": reason} if reason else {},
        )
        if action in ("reject", "revoke"):
            transaction.on_commit(lambda: emails.send_decision(current))
    subscription.refresh_from_db()
    return subscription


def _locked(subscription: Subscription) -> Subscription:
    """The row, locked until the transaction ends, with a passed expiry applied first."""
    current = Subscription.objects.select_for_update().select_related("institution", "dataset").get(pk=subscription.pk)
    if current.status == S.APPROVED and current.expires_at <= timezone.now():
        _apply(current, "expire", by=None, request=None, changes={})
    return current


def _locked_or_new(institution: Institution, dataset: Dataset) -> Subscription:
    """The institution's subscription to the dataset, locked; or a new, unsaved one ("no subscription yet").

    Two concurrent first requests both see none; the unique constraint makes the second fail.
    """
    existing = (
        Subscription.objects.filter(institution=institution, dataset=dataset).values_list("pk", flat=True).first()
    )
    if existing is None:
        return Subscription(institution=institution, dataset=dataset)
    return _locked(Subscription(pk=existing))


@contextmanager
def _first_writer_wins() -> Iterator[None]:
    """Two first requests for the same dataset at once: the unique constraint lets one through."""
    try:
        yield
    except IntegrityError:
        raise Refusal(
            "Another change to this subscription was being made at the same time; try again.",
            code="conflict",
            kind=Kind.CONFLICT,
        ) from None


def _apply(subscription: Subscription, action: str, *, by, request, changes: dict, details: dict | None = None) -> None:
    """Check the transition, save the changes, and write the history row and the audit event."""
    sources, target = TRANSITIONS[action]
    from_status = subscription.status if subscription.pk else NEW
    if from_status not in sources:
        raise Refusal(
            _conflict_message(subscription, action),
            code="invalid_transition",
            kind=Kind.CONFLICT,
            details={"status": from_status, "action": action},
        )
    for field, value in changes.items():
        setattr(subscription, field, value)
    subscription.status = target
    subscription.save()
    _history_and_audit(subscription, action, from_status, by=by, request=request, details=details)


def _history_and_audit(subscription: Subscription, action: str, from_status, *, by, request, details) -> None:
    details = details or {}
    SubscriptionChange.objects.create(
        subscription=subscription,
        action=action,
        from_status=from_status or "",
        to_status=subscription.status,
        actor=_actor_name(by, request),
        reason=details.get("reason", ""),
        details=details,
    )
    institution = subscription.institution_id
    actor = by_user(by, institution) if request is None and _is_user(by) else {"institution": str(institution)}
    record(
        f"subscription.{action}",
        target=f"subscription:{subscription.pk}",
        details={"dataset": subscription.dataset.slug, "from": from_status, "to": subscription.status, **details},
        request=request,
        **actor,
    )


def _checked_modes(dataset: Dataset, modes: Iterable[str] | None) -> list[str]:
    allowed = MODES_BY_TIER[dataset.tier]
    chosen = list(dict.fromkeys(modes or ()))
    if not chosen:
        raise invalid_request(f"Choose at least one access mode: {', '.join(allowed)}.", allowed_modes=list(allowed))
    refused = [str(mode) for mode in chosen if mode not in allowed]
    if refused:
        raise invalid_request(
            f"The {dataset.tier} dataset {dataset.slug} allows {', '.join(allowed)} access, not {', '.join(refused)}.",
            allowed_modes=list(allowed),
        )
    return [mode for mode in allowed if mode in chosen]  # canonical order


def _required_reason(reason: str, what: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise invalid_request(f"A {what} needs a reason; it is sent to the partner.")
    return reason


_PAST = {
    "request": "requested again",
    "approve": "approved",
    "reject": "rejected",
    "revoke": "revoked",
    "expire": "expired",
    "cancel": "cancelled",
    "grant": "granted",
}


def _conflict_message(subscription: Subscription, action: str) -> str:
    if not subscription.pk:
        return f"There is no subscription to {action}."
    name = f"The subscription of {subscription.institution.legal_name} to {subscription.dataset.slug}"
    if action == "request" and subscription.status == S.REVOKED:
        return f"{name} was revoked; only a platform administrator can reinstate it."
    return f"{name} is {subscription.status}; it cannot be {_PAST[action]}."


def _is_user(by) -> bool:
    return by is not None and getattr(by, "pk", None) is not None


def _actor_name(by, request) -> str:
    if _is_user(by):
        return by.get_username()
    client = getattr(request, "auth_client", None) if request is not None else None
    return f"client {client.client_id}" if client is not None else ""
