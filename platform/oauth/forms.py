"""Portal forms for OAuth clients and initial access tokens."""

from __future__ import annotations

from django import forms
from django.utils.text import format_lazy
from django.utils.translation import gettext_lazy as _

from oauth.models import AuthMethod, GrantType
from oauth.scopes import SCOPES
from vitamin import parsers

_SCOPE_CHOICES = [(name, format_lazy("{} — {}", name, _(description))) for name, description in SCOPES.items()]


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


class ClientSettingsForm(forms.Form):
    name = forms.CharField(max_length=100, label=_("Name"))
    scopes = forms.MultipleChoiceField(choices=_SCOPE_CHOICES, widget=forms.CheckboxSelectMultiple, label=_("Scopes"))
    redirect_uris = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        required=False,
        label=_("Redirect URIs"),
        help_text=_("One per line, matched exactly. Needed for the authorization code grant."),
    )

    def clean_redirect_uris(self) -> list[str]:
        return _lines(self.cleaned_data["redirect_uris"])


class NewClientForm(ClientSettingsForm):
    grant_types = forms.MultipleChoiceField(
        choices=GrantType.choices,
        widget=forms.CheckboxSelectMultiple,
        initial=[GrantType.CLIENT_CREDENTIALS],
        label=_("Grant types"),
    )
    auth_method = forms.ChoiceField(choices=AuthMethod.choices, label=_("Client authentication"))
    jwks = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 4}),
        required=False,
        label=_("Public keys (JWKS)"),
        help_text=_('For private_key_jwt: {"keys": [...]} with public RSA or EC keys.'),
    )

    def clean_jwks(self) -> dict | None:
        text = self.cleaned_data["jwks"].strip()
        if not text:
            return None
        try:
            return parsers.loads(text)
        except ValueError:
            raise forms.ValidationError(_("This is not valid JSON.")) from None


class RegistrationTokenForm(forms.Form):
    scopes = forms.MultipleChoiceField(
        choices=_SCOPE_CHOICES, widget=forms.CheckboxSelectMultiple, initial=list(SCOPES), label=_("Widest scopes")
    )
