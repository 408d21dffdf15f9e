"""Portal forms for accounts (sign-up, sign-in by e-mail, password reset), applications, members and status changes."""

from __future__ import annotations

from django import forms
from django.contrib.auth import get_user_model, password_validation
from django.contrib.auth.forms import AuthenticationForm, PasswordResetForm
from django.utils.translation import gettext_lazy as _

from institutions.lifecycle import ALLOWED_TRANSITIONS
from institutions.models import Institution, InstitutionStatus, Role


class SignupForm(forms.Form):
    full_name = forms.CharField(max_length=150, label=_("Full name"))
    email = forms.EmailField(label=_("E-mail"))
    password = forms.CharField(widget=forms.PasswordInput, strip=False, label=_("Password"))
    password_again = forms.CharField(widget=forms.PasswordInput, strip=False, label=_("Password (again)"))

    def clean_email(self) -> str:
        email = self.cleaned_data["email"].strip().lower()
        if get_user_model().objects.filter(username__iexact=email).exists():
            raise forms.ValidationError(_("An account with this email address already exists; sign in instead."))
        return email

    def clean(self):
        cleaned = super().clean()
        password = cleaned.get("password")
        if password and password != cleaned.get("password_again"):
            self.add_error("password_again", _("The two passwords differ."))
        elif password:
            candidate = get_user_model()(username=cleaned.get("email", ""), email=cleaned.get("email", ""))
            try:
                password_validation.validate_password(password, candidate)
            except forms.ValidationError as exc:
                self.add_error("password", exc)
        return cleaned


class EmailSignInForm(AuthenticationForm):
    """Sign in with the e-mail address; also for accounts whose username is not their address (the
    bootstrap `admin`): the address is looked up, case-insensitively, before the password is checked."""

    username = forms.EmailField(
        label=_("E-mail"), widget=forms.EmailInput(attrs={"autofocus": True, "autocomplete": "username"})
    )

    def clean_username(self) -> str:
        email = self.cleaned_data["username"].strip()
        users = get_user_model().objects
        user = users.filter(username__iexact=email).first() or users.filter(email__iexact=email).order_by("pk").first()
        return user.get_username() if user else email


class PasswordResetRequestForm(PasswordResetForm):
    """Django's form, with the field labelled as everywhere else; accounts.PasswordResetRequestView mails the link."""

    email = forms.EmailField(
        label=_("E-mail"), max_length=254, widget=forms.EmailInput(attrs={"autocomplete": "email"})
    )


class ApplicationForm(forms.ModelForm):
    class Meta:
        model = Institution
        fields = ["legal_name", "type", "credit_code", "contact_name", "contact_email", "contact_phone"]
        labels = {
            "legal_name": _("Legal name"),
            "type": _("Type"),
            "credit_code": _("Unified social credit code"),
            "contact_name": _("Contact name"),
            "contact_email": _("Contact e-mail"),
            "contact_phone": _("Contact phone"),
        }
        help_texts = {"credit_code": _("统一社会信用代码: 18 characters, as on the business licence.")}

    def clean_credit_code(self) -> str:
        return self.cleaned_data["credit_code"].strip().upper()


class InviteForm(forms.Form):
    email = forms.EmailField(label=_("E-mail"))
    role = forms.ChoiceField(choices=Role.choices, initial=Role.ANALYST, label=_("Role"))


class StatusChangeForm(forms.Form):
    to_status = forms.ChoiceField(choices=InstitutionStatus.choices, label=_("New status"))
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), max_length=2000, label=_("Reason"))

    def __init__(self, *args, institution: Institution, **kwargs):
        super().__init__(*args, **kwargs)
        allowed = ALLOWED_TRANSITIONS[institution.status]
        self.fields["to_status"].choices = [
            (value, label) for value, label in InstitutionStatus.choices if value in allowed
        ]
