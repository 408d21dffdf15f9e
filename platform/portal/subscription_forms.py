"""The portal form a partner requests access to a dataset with."""

from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _

from access import service as access
from access.models import QuotaPlan
from access.subscriptions import PURPOSE_MAX_CHARS
from catalog.models import Dataset


class RequestAccessForm(forms.Form):
    institution = forms.ModelChoiceField(
        queryset=None, empty_label=None, label=_("Institution"), help_text=_("You request for this institution.")
    )
    modes = forms.MultipleChoiceField(
        label=_("Access modes"), widget=forms.CheckboxSelectMultiple, help_text=_("What this dataset's tier allows.")
    )
    plan = forms.ModelChoiceField(
        queryset=QuotaPlan.objects.filter(is_offered=True),
        required=False,
        empty_label=_("No preference"),
        label=_("Requested plan"),
        help_text=_("The administrators choose the plan when they approve."),
    )
    purpose = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 4}),
        max_length=PURPOSE_MAX_CHARS,
        label=_("Purpose"),
        help_text=_("What the data will be used for. The administrators read this before deciding."),
    )

    def __init__(self, *args, dataset: Dataset, institutions, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["institution"].queryset = institutions
        allowed = access.offered_modes(dataset.tier)
        self.fields["modes"].choices = [(mode, access.mode_label(mode)) for mode in allowed]
        self.fields["modes"].initial = list(allowed)
