"""Partner institutions, their people, and the history of their approval status."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from institutions.credit_code import validate_credit_code


class InstitutionType(models.TextChoices):
    FUND_COMPANY = "fund_company", _("Fund management company")
    BANK = "bank", _("Bank")
    INSURER = "insurer", _("Insurer")
    SECURITIES_FIRM = "securities_firm", _("Securities firm")
    OTHER = "other", _("Other")


class InstitutionStatus(models.TextChoices):
    PENDING = "pending", _("Pending review")
    APPROVED = "approved", _("Approved")
    SUSPENDED = "suspended", _("Suspended")
    CLOSED = "closed", _("Closed")


class InstitutionManager(models.Manager):
    def get_by_reference(self, reference: str) -> Institution:
        """By primary key or by unified social credit code (as admins type them in commands)."""
        reference = reference.strip()
        if reference.isdigit() and len(reference) < 18:
            return self.get(pk=int(reference))
        return self.get(credit_code=reference.upper())


class Institution(models.Model):
    legal_name = models.CharField(max_length=200, unique=True)
    type = models.CharField(max_length=32, choices=InstitutionType.choices)
    credit_code = models.CharField(
        "unified social credit code", max_length=18, unique=True, validators=[validate_credit_code]
    )
    contact_name = models.CharField(max_length=100)
    contact_email = models.EmailField()
    contact_phone = models.CharField(max_length=40, blank=True)
    # Changed only through institutions.lifecycle.change_status, which keeps the history.
    status = models.CharField(max_length=16, choices=InstitutionStatus.choices, default=InstitutionStatus.PENDING)
    applicant = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    objects = InstitutionManager()

    class Meta:
        ordering = ["legal_name"]

    def __str__(self) -> str:
        return self.legal_name

    @property
    def is_approved(self) -> bool:
        return self.status == InstitutionStatus.APPROVED


class InstitutionStatusChange(models.Model):
    """Who moved an institution from one status to another, when, and why."""

    institution = models.ForeignKey(Institution, on_delete=models.CASCADE, related_name="status_changes")
    from_status = models.CharField(max_length=16, choices=InstitutionStatus.choices, blank=True)
    to_status = models.CharField(max_length=16, choices=InstitutionStatus.choices)
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reason = models.TextField()
    changed_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-changed_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.institution}: {self.from_status or '-'} → {self.to_status}"


class Role(models.TextChoices):
    OWNER = "owner", _("Owner")
    ADMIN = "admin", pgettext_lazy("member role", "Admin")  # not the header's link to the Django admin
    ANALYST = "analyst", _("Analyst")
    VIEWER = "viewer", _("Viewer")


# Roles that manage the institution on the portal: members, clients, registration tokens.
MANAGER_ROLES = (Role.OWNER, Role.ADMIN)


class Member(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    institution = models.ForeignKey(Institution, on_delete=models.CASCADE, related_name="members")
    role = models.CharField(max_length=16, choices=Role.choices)
    joined_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "institution"], name="one_membership_per_institution")]
        ordering = ["institution", "user__username"]

    def __str__(self) -> str:
        return f"{self.user} ({self.role}) at {self.institution}"

    @property
    def can_manage(self) -> bool:
        return self.role in MANAGER_ROLES


class Invitation(models.Model):
    """An emailed invitation to join an institution; the link carries a signed, expiring token."""

    institution = models.ForeignKey(Institution, on_delete=models.CASCADE, related_name="invitations")
    email = models.EmailField()
    role = models.CharField(max_length=16, choices=Role.choices)
    invited_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.email} → {self.institution} ({self.role})"
