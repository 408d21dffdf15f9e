"""What a lookup leaves behind: the request (for replays and as the record), its consents, and cut-offs tried.

No model holds a customer identifier, its SHA-256 or the dataset's pseudonym of it: a
cut-off check keeps a per-institution re-keyed pseudonym (`CutoffCheck.subject`), and an
answer kept for replays is encrypted (`lookups.replays`).
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from catalog.models import Dataset
from institutions.models import Institution


class LookupRequest(models.Model):
    """One answered lookup batch or cohort assessment of an institution, by its transaction id."""

    class Kind(models.TextChoices):
        LOOKUP = "lookup", "Lookup batch"
        COHORT = "cohort", "Cohort assessment"

    institution = models.ForeignKey(Institution, on_delete=models.PROTECT, related_name="lookup_requests")
    client_id = models.CharField(max_length=100, help_text="The OAuth client that sent it.")
    dataset = models.ForeignKey(Dataset, on_delete=models.PROTECT, related_name="lookup_requests")
    version_number = models.PositiveIntegerField()
    kind = models.CharField(max_length=10, choices=Kind.choices)
    transaction_id = models.CharField(max_length=100)
    request_digest = models.CharField(
        max_length=64, help_text="Keyed hash of the request: a replay must be the same request."
    )
    items = models.PositiveIntegerField()
    matched = models.PositiveIntegerField(null=True, blank=True, help_text="Lookups only: customers found.")
    answer = models.BinaryField(
        null=True, blank=True, help_text="The answer, encrypted, until replay_until; then erased."
    )
    created_at = models.DateTimeField(default=timezone.now)
    replay_until = models.DateTimeField()

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.UniqueConstraint(fields=["institution", "transaction_id"], name="one_request_per_transaction_id")
        ]
        indexes = [models.Index(fields=["replay_until"])]

    def __str__(self) -> str:
        return f"{self.kind} {self.transaction_id} ({self.institution_id} → {self.dataset_id})"


class LookupConsent(models.Model):
    """The consent a bank stated for one item of a lookup batch, and what became of the item."""

    request = models.ForeignKey(LookupRequest, on_delete=models.CASCADE, related_name="consents")
    position = models.PositiveIntegerField(help_text="The item's place in the batch, from 0.")
    item_reference = models.CharField(max_length=200, help_text="The bank's own reference of the item.")
    consent_reference = models.CharField(max_length=200, blank=True)
    consent_scope = models.CharField(max_length=500, blank=True)
    consent_expires_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=20, help_text="matched, not_found, or the item's refusal code.")

    class Meta:
        ordering = ["request", "position"]
        constraints = [models.UniqueConstraint(fields=["request", "position"], name="one_consent_per_item")]
        indexes = [models.Index(fields=["consent_reference"])]

    def __str__(self) -> str:
        return f"{self.request_id}#{self.position}: {self.outcome}"


class CutoffCheck(models.Model):
    """A cut-off an institution compared one customer's field with, on one day (threshold-only lookups).

    `slot` numbers the distinct cut-offs of a (customer, field, day) from 1; the database refuses
    a second row with the same slot, so two concurrent batches cannot both take the last one.
    """

    institution = models.ForeignKey(Institution, on_delete=models.CASCADE, related_name="+")
    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="+")
    field = models.CharField(max_length=63)
    subject = models.CharField(max_length=64, help_text="The customer, re-keyed for this institution.")
    day = models.DateField()
    cutoff = models.FloatField()
    slot = models.PositiveSmallIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["institution", "dataset", "field", "subject", "day", "cutoff"], name="one_row_per_cutoff"
            ),
            models.UniqueConstraint(
                fields=["institution", "dataset", "field", "subject", "day", "slot"], name="one_cutoff_per_slot"
            ),
        ]
        indexes = [models.Index(fields=["day"])]

    def __str__(self) -> str:
        return f"{self.day} {self.field} >= {self.cutoff} (slot {self.slot})"
