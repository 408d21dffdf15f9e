"""The grant service: may this institution use this dataset in this mode, right now?

    from access.service import allowed, ensure

    if allowed(institution, dataset, "query"): ...            # a yes/no, for display
    grant = ensure(institution, dataset, "query", request=request)  # or Denied (a Refusal)

Every access path (catalog samples of non-open data, the SQL gateway, Delta
Sharing, lookups) calls `ensure`; no view decides access on its own. Each call
compares the subscription, the institution and the dataset with the current time,
so a revocation, an expiry or a suspension takes effect on the very next request.
The read behind it is one query whose SQL is compiled once per thread
(`vitamin.prepared`); the row it finds is kept only as long as the access
generation is unchanged (`vitamin.access_generation`: the database changes it with every
write to those tables), so a change is seen at once, as without the cache.

`institution` is an Institution or its id; `dataset` a Dataset or its slug.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.utils import timezone
from django.utils.translation import gettext, gettext_lazy

from access.models import Subscription
from audit.models import Outcome
from audit.service import record
from catalog.models import Dataset, DatasetVersion
from datasets.query.limits import Limits
from datasets.spec import MODES, MODES_BY_TIER, Mode
from institutions.models import Institution, InstitutionStatus
from vitamin import access_generation as generation
from vitamin.prepared import PreparedLookup
from vitamin.refusals import Kind, Refusal

S = Subscription.Status


@dataclass(frozen=True)
class Grant:
    """Access that `ensure` found valid at the moment of the call. Use it for this request only."""

    subscription: Subscription
    mode: str
    limits: Limits
    pinned_version: DatasetVersion | None

    @property
    def institution(self) -> Institution:
        return self.subscription.institution

    @property
    def dataset(self) -> Dataset:
        return self.subscription.dataset

    @property
    def modes(self) -> tuple[str, ...]:
        return tuple(self.subscription.modes)

    @property
    def expires_at(self) -> datetime:
        return self.subscription.expires_at

    @property
    def quota_subject(self) -> str:
        return self.subscription.quota_subject


class Denied(Refusal):
    """A forbidden access, with a stable code saying why (see DENIALS)."""

    def __init__(self, message: str, *, code: str, details: dict | None = None):
        super().__init__(message, code=code, kind=Kind.FORBIDDEN, details=details)


# The modes a partner can use today (every mode there is; a mode added later is offered once it is served).
SERVED_MODES: tuple[Mode, ...] = (Mode.QUERY, Mode.DOWNLOAD, Mode.LOOKUP)


def offered_modes(tier: str) -> tuple[Mode, ...]:
    """The modes a partner may ask for on a dataset of this tier today."""
    return tuple(mode for mode in MODES_BY_TIER[tier] if mode in SERVED_MODES)


# The modes' names in the portal's languages: datasets.spec keeps them in English (no Django there), and
# tests/portal/test_i18n.py holds the two equal.
MODE_WORDS = {
    Mode.QUERY: gettext_lazy("SQL queries"),
    Mode.DOWNLOAD: gettext_lazy("Bulk download (Delta Sharing)"),
    Mode.LOOKUP: gettext_lazy("Consented lookups"),
}


def mode_label(mode: str) -> str:
    """A mode's name for people, in the active language; a mode not served yet says it is planned."""
    label = MODE_WORDS[Mode(mode)]
    return str(label) if mode in SERVED_MODES else gettext("%(mode)s (planned)") % {"mode": label}


# Code → message template; the codes are part of the API.
DENIALS = {
    "institution_suspended": "{institution} is suspended; its access to every dataset is stopped.",
    "institution_not_active": "{institution} is not an approved institution.",
    "not_subscribed": "{institution} has no subscription to {dataset}.",
    "subscription_pending": "The subscription of {institution} to {dataset} is waiting for approval.",
    "subscription_revoked": "The subscription of {institution} to {dataset} has been revoked.",
    "subscription_expired": "The subscription of {institution} to {dataset} has expired.",
    "dataset_unavailable": "The dataset {dataset} is no longer offered.",
    "mode_not_granted": "The subscription of {institution} to {dataset} does not include {mode} access.",
}


def ensure(
    institution: Institution | int,
    dataset: Dataset | str,
    mode: str,
    *,
    request=None,
    now: datetime | None = None,
) -> Grant:
    """The grant for this access, or Denied (a FORBIDDEN refusal) naming why. A denial is audited."""
    grant, code, names = _check(institution, dataset, mode, now)
    if grant is not None:
        return grant
    record(
        "grant.denied",
        outcome=Outcome.DENIED,
        institution=str(names["institution_id"]),
        target=f"dataset:{names['dataset']}",
        details={"mode": mode, "code": code},
        request=request,
    )
    raise Denied(
        DENIALS[code].format(mode=mode, **names), code=code, details={"dataset": names["dataset"], "mode": mode}
    )


def allowed(institution: Institution | int, dataset: Dataset | str, mode: str, *, now: datetime | None = None) -> bool:
    """Whether `ensure` would grant this access now (nothing is recorded)."""
    grant, _, _ = _check(institution, dataset, mode, now)
    return grant is not None


def denial_code(
    institution: Institution | int, dataset: Dataset | str, mode: str, *, now: datetime | None = None
) -> str | None:
    """Why `ensure` would refuse this access now (a DENIALS code), or None when it would grant it."""
    return _check(institution, dataset, mode, now)[1]


def active_grants(institution: Institution | int, mode: str, *, now: datetime | None = None) -> list[Grant]:
    """Every grant in `mode` the institution holds right now, by dataset slug (one query; e.g. Delta Sharing's table list)."""
    if mode not in MODES:
        raise ValueError(f"unknown access mode {mode!r}; known: {', '.join(MODES)}")
    now = now or timezone.now()
    subscriptions = (
        _subscriptions().filter(institution_id=_pk(institution), status=S.APPROVED).order_by("dataset__slug")
    )
    return [
        _grant(subscription, mode)
        for subscription in subscriptions
        if _refusal(subscription, subscription.institution.status, mode, now) is None
    ]


def version_for(grant: Grant) -> DatasetVersion | None:
    """The version this grant reads: the pinned one, else the latest published one (None before the first)."""
    return grant.pinned_version or grant.dataset.latest_version()


def pinned_version_numbers(dataset: Dataset) -> set[int]:
    """Versions of `dataset` that live subscriptions pin, which retention must keep."""
    return set(
        Subscription.objects.filter(dataset=dataset, status=S.APPROVED, pinned_version__isnull=False)
        .filter(expires_at__gt=timezone.now())
        .values_list("pinned_version__number", flat=True)
    )


# --- the one decision -------------------------------------------------------------


def _check(institution, dataset, mode: str, now: datetime | None) -> tuple[Grant | None, str | None, dict]:
    if mode not in MODES:
        raise ValueError(f"unknown access mode {mode!r}; known: {', '.join(MODES)}")
    now = now or timezone.now()
    institution_id = _pk(institution)
    if isinstance(dataset, Dataset):
        subscription = _SUBSCRIPTION_BY_DATASET_ID.first(institution_id, dataset.pk)
    else:
        subscription = _SUBSCRIPTION_BY_SLUG.first(institution_id, dataset)
    if subscription is None:
        institution_row = Institution.objects.filter(pk=institution_id).only("legal_name", "status").first()
        status = institution_row.status if institution_row else InstitutionStatus.CLOSED
        code = _institution_refusal(status) or "not_subscribed"
        names = {
            "institution_id": institution_id,
            "institution": institution_row.legal_name if institution_row else f"Institution {institution_id}",
            "dataset": dataset.slug if isinstance(dataset, Dataset) else dataset,
        }
        return None, code, names
    names = {
        "institution_id": institution_id,
        "institution": subscription.institution.legal_name,
        "dataset": subscription.dataset.slug,
    }
    code = _refusal(subscription, subscription.institution.status, mode, now)
    if code is not None:
        return None, code, names
    return _grant(subscription, mode), None, names


def _refusal(subscription: Subscription, institution_status: str, mode: str, now: datetime) -> str | None:
    """Why this subscription does not give `mode` access at `now`, or None. Order: who, what, state, how."""
    code = _institution_refusal(institution_status)
    if code:
        return code
    if not subscription.dataset.is_active:
        return "dataset_unavailable"
    if subscription.status in (S.REJECTED, S.CANCELLED):
        return "not_subscribed"
    if subscription.status == S.REQUESTED:
        return "subscription_pending"
    if subscription.status == S.REVOKED:
        return "subscription_revoked"
    if subscription.status == S.EXPIRED or subscription.expires_at <= now:
        return "subscription_expired"
    if mode not in subscription.modes or mode not in MODES_BY_TIER[subscription.dataset.tier]:
        return "mode_not_granted"
    return None


def _institution_refusal(status: str) -> str | None:
    if status == InstitutionStatus.SUSPENDED:
        return "institution_suspended"
    if status != InstitutionStatus.APPROVED:
        return "institution_not_active"
    return None


def _grant(subscription: Subscription, mode: str) -> Grant:
    return Grant(
        subscription=subscription, mode=mode, limits=subscription.limits(), pinned_version=subscription.pinned_version
    )


def _subscriptions():
    return Subscription.objects.select_related("institution", "dataset", "plan", "pinned_version")


# The one decision's read, on every request of every path: compiled once per thread, its row kept while the
# access generation stays the same (unique per institution and dataset, so the order only makes `first` well defined).
_SUBSCRIPTION_BY_SLUG = PreparedLookup(
    lambda institution_id, slug: (
        _subscriptions().filter(institution_id=institution_id, dataset__slug=slug).order_by("pk")
    ),
    int,
    str,
    cached_by=generation.current,
)
_SUBSCRIPTION_BY_DATASET_ID = PreparedLookup(
    lambda institution_id, dataset_id: (
        _subscriptions().filter(institution_id=institution_id, dataset_id=dataset_id).order_by("pk")
    ),
    int,
    int,
    cached_by=generation.current,
)


def _pk(institution: Institution | int) -> int:
    return institution.pk if isinstance(institution, Institution) else int(institution)
