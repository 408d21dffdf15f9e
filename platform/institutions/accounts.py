"""Portal accounts: sign-up with email verification, sign-in by e-mail, sign-out, password reset.

An account is created inactive and activated by the signed link mailed to its
address; Django refuses to sign in inactive users, so an unverified address
cannot be used. The email address is the username.

Password reset is Django's: the answer to a request is the same page whether or
not an account has that address (no enumeration); the mailed link carries a token
that stops working once the password changes (single use) and after
VITAMIN_PASSWORD_RESET_SECONDS. Requests for known accounts and completed resets are audited.
Requests are throttled per address and per client IP address (`institutions.throttle`): one
over a limit sends nothing, is audited as refused (outcome `denied`), and gets the same answer.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth import views as auth_views
from django.db import transaction
from django.http import HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse_lazy
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods

from audit.actors import by_system, by_user, by_username_or_system
from audit.models import Outcome
from audit.service import record
from institutions import emails, links, throttle
from institutions.forms import EmailSignInForm, PasswordResetRequestForm, SignupForm
from vitamin.client_ip import client_ip


@require_http_methods(["GET", "POST"])
def sign_up(request):
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        email = form.cleaned_data["email"]
        with transaction.atomic():
            user = get_user_model().objects.create_user(
                username=email, email=email, password=form.cleaned_data["password"], is_active=False
            )
            user.first_name = form.cleaned_data["full_name"][:150]
            user.save(update_fields=["first_name"])
            record("account.signed_up", **by_username_or_system(email), target=f"user:{email}", request=request)
        emails.send_verification(request, user)
        return render(request, "institutions/signup_done.html", {"email": email})
    return render(request, "institutions/signup.html", {"form": form})


@require_http_methods(["GET"])
def verify_email(request, token: str):
    try:
        payload = links.read_token(
            token, salt=links.VERIFY_EMAIL_SALT, max_age_seconds=links.VERIFY_EMAIL_MAX_AGE_SECONDS
        )
    except links.BadLink as exc:
        return render(
            request, "institutions/message.html", {"title": _("Email not confirmed"), "message": str(exc)}, status=400
        )
    user = get_user_model().objects.filter(pk=payload.get("user"), email=payload.get("email")).first()
    if user is None:
        return render(
            request,
            "institutions/message.html",
            {"title": _("Email not confirmed"), "message": _("This account no longer exists.")},
            status=400,
        )
    if not user.is_active and user.last_login is None:  # never reactivates an account an admin switched off
        user.is_active = True
        user.save(update_fields=["is_active"])
        record("account.email_verified", **by_user(user), request=request)
    messages.success(request, _("Your email address is confirmed. Sign in to continue."))
    return redirect("login")


class SignInView(auth_views.LoginView):
    template_name = "institutions/login.html"
    authentication_form = EmailSignInForm
    redirect_authenticated_user = True
    next_page = "my-institutions"


class SignOutView(auth_views.LogoutView):
    next_page = "/"


class PasswordResetRequestView(auth_views.PasswordResetView):
    template_name = "institutions/password_reset.html"
    form_class = PasswordResetRequestForm
    success_url = reverse_lazy("password-reset-sent")

    def form_valid(self, form):
        email = form.cleaned_data["email"]
        refused_by = throttle.take_request(email, client_ip(self.request))
        users = list(form.get_users(email))
        if refused_by:
            # No mail, and the answer of an accepted request: it tells neither whether an account has the address
            # nor that a limit was reached. On record for each account asked about (the system for an unknown address).
            for actor in [by_user(user) for user in users] or [by_system()]:
                record(
                    "account.password_reset_requested",
                    outcome=Outcome.DENIED,
                    **actor,
                    details={"code": "rate_limited", "limit": refused_by},
                    request=self.request,
                )
            return HttpResponseRedirect(self.get_success_url())
        for user in users:
            record("account.password_reset_requested", **by_user(user), request=self.request)  # before: fail closed
            emails.send_password_reset(self.request, user)
        return HttpResponseRedirect(self.get_success_url())


class PasswordResetSentView(auth_views.PasswordResetDoneView):
    template_name = "institutions/password_reset_sent.html"


class PasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    template_name = "institutions/password_reset_confirm.html"
    success_url = reverse_lazy("password-reset-complete")

    def form_valid(self, form):
        with transaction.atomic():  # the new password and its audit event, or neither
            response = super().form_valid(form)
            record("account.password_reset", **by_user(form.user), request=self.request)
        return response


class PasswordResetCompleteView(auth_views.PasswordResetCompleteView):
    template_name = "institutions/password_reset_complete.html"
