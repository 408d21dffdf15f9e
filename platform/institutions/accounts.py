"""Portal accounts: sign-up with email verification, sign-in, sign-out.

An account is created inactive and activated by the signed link mailed to its
address; Django refuses to sign in inactive users, so an unverified address
cannot be used. The email address is the username.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth import views as auth_views
from django.db import transaction
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from audit.actors import by_user, by_username_or_system
from audit.service import record
from institutions import emails, links
from institutions.forms import SignupForm


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
            request, "institutions/message.html", {"title": "Email not confirmed", "message": str(exc)}, status=400
        )
    user = get_user_model().objects.filter(pk=payload.get("user"), email=payload.get("email")).first()
    if user is None:
        return render(
            request,
            "institutions/message.html",
            {"title": "Email not confirmed", "message": "This account no longer exists."},
            status=400,
        )
    if not user.is_active and user.last_login is None:  # never reactivates an account an admin switched off
        user.is_active = True
        user.save(update_fields=["is_active"])
        record("account.email_verified", **by_user(user), request=request)
    messages.success(request, "Your email address is confirmed. Sign in to continue.")
    return redirect("login")


class SignInView(auth_views.LoginView):
    template_name = "institutions/login.html"
    redirect_authenticated_user = True
    next_page = "my-institutions"


class SignOutView(auth_views.LogoutView):
    next_page = "/"
