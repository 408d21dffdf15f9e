"""The portal form a partner requests access to a dataset with."""

from __future__ import annotations

from django import forms

from access import service as access
from access.models import QuotaPlan
from access.subscriptions import PURPOSE_MAX_CHARS
from catalog.models import Dataset


class RequestAccessForm(forms.Form):
    institution = forms.ModelChoiceField(queryset=None, empty_label=None, help_text="You request for this institution.")
    modes = forms.MultipleChoiceField(
        label="Access modes", widget=forms.CheckboxSelectMultiple, help_text="What this dataset's tier allows."
    )
    plan = forms.ModelChoiceField(
        queryset=QuotaPlan.objects.filter(is_offered=True),
        required=False,
        empty_label="No preference",
        label="Requested plan",
        help_text="The administrators choose the plan when they approve.",
    )
    purpose = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 4}),
        max_length=PURPOSE_MAX_CHARS,
        help_text="What the data will be used for. The administrators read this before deciding.",
    )

    def __init__(self, *args, dataset: Dataset, institutions, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["institution"].queryset = institutions
        allowed = access.offered_modes(dataset.tier)
        self.fields["modes"].choices = [(mode, access.mode_label(mode)) for mode in allowed]
        self.fields["modes"].initial = list(allowed)
