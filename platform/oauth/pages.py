"""Portal pages for an institution's OAuth clients (routed from institutions/urls.py with the other pages).

Members see the clients; owners and admins create and change them. The kill switch
(disable, enable) is also for platform staff, who may stop any institution's client.
Secrets and initial access tokens are rendered once, on the response to the POST that
made them, and never stored in plain text.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from institutions.access import ensure_manager, ensure_member
from institutions.models import Institution
from oauth import clients
from oauth.activity import with_last_use
from oauth.forms import ClientSettingsForm, NewClientForm, RegistrationTokenForm
from oauth.metadata import server_metadata
from oauth.models import Client
from oauth.scopes import parse_scope


@login_required
def list_clients(request, pk: int):
    institution = get_object_or_404(Institution, pk=pk)
    member = ensure_member(request.user, institution)
    return render(
        request,
        "oauth/clients.html",
        {
            "institution": institution,
            "member": member,
            "clients": with_last_use(institution.oauth_clients.order_by("disabled_at", "name")),
            "can_switch": _may_switch(request.user, member),
            "registration_form": RegistrationTokenForm(),
            "metadata": server_metadata(request),
        },
    )


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def new_client(request, pk: int):
    institution = get_object_or_404(Institution, pk=pk)
    ensure_manager(request.user, institution)
    form = NewClientForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            client, secret = clients.create_client(
                institution,
                name=data["name"],
                scope=" ".join(data["scopes"]),
                grant_types=data["grant_types"],
                redirect_uris=data["redirect_uris"],
                auth_method=data["auth_method"],
                jwks=data["jwks"],
                by=request.user,
                request=request,
            )
        except clients.ClientConfigError as exc:
            form.add_error(None, str(exc))
        else:
            return _show_secret(request, client, secret, "created")
    return render(request, "oauth/client_new.html", {"institution": institution, "form": form})


@login_required
@require_http_methods(["GET", "POST"])
def show_client(request, client_id: str):
    client = get_object_or_404(with_last_use(Client.objects.select_related("institution")), client_id=client_id)
    member = ensure_member(request.user, client.institution)
    initial = {
        "name": client.name,
        "scopes": parse_scope(client.scope),
        "redirect_uris": "\n".join(client.redirect_uris),
    }
    form = ClientSettingsForm(request.POST or None, initial=initial)
    if request.method == "POST":
        ensure_manager(request.user, client.institution)
        if form.is_valid():
            try:
                clients.update_client(
                    client,
                    name=form.cleaned_data["name"],
                    scope=" ".join(form.cleaned_data["scopes"]),
                    redirect_uris=form.cleaned_data["redirect_uris"],
                    by=request.user,
                    request=request,
                )
            except clients.ClientConfigError as exc:
                form.add_error(None, str(exc))
            else:
                messages.success(request, _("Client updated."))
                return redirect("client", client_id=client.client_id)
    return render(
        request,
        "oauth/client.html",
        {
            "client": client,
            "member": member,
            "form": form,
            "live_tokens": client.tokens.filter(revoked_at__isnull=True).count(),
            "can_switch": _may_switch(request.user, member),
            "overlap_hours": settings.CLIENT_SECRET_OVERLAP_SECONDS / 3600,
        },
    )


@never_cache
@login_required
@require_POST
def rotate_client_secret(request, client_id: str):
    client = _managed_client(request, client_id)
    try:
        secret = clients.rotate_secret(client, by=request.user, request=request)
    except clients.ClientConfigError as exc:
        messages.error(request, str(exc))
        return redirect("client", client_id=client.client_id)
    return _show_secret(request, client, secret, "rotated")


@login_required
@require_POST
def end_secret_overlap(request, client_id: str):
    client = _managed_client(request, client_id)
    if clients.end_secret_overlap(client, by=request.user, request=request):
        messages.success(request, _("The previous secret no longer works; only the current one does."))
    else:
        messages.info(request, _("There was no previous secret still working."))
    return redirect("client", client_id=client.client_id)


@login_required
@require_POST
def revoke_client_tokens(request, client_id: str):
    client = _managed_client(request, client_id)
    revoked = clients.revoke_client_tokens(client, by=request.user, request=request)
    messages.success(
        request, ngettext("%(count)d token revoked.", "%(count)d tokens revoked.", revoked) % {"count": revoked}
    )
    return redirect("client", client_id=client.client_id)


@login_required
@require_POST
def switch_client(request, client_id: str, enabled: bool):
    """The kill switch: routed twice, as disable (enabled=False) and enable (enabled=True)."""
    client = _switchable_client(request, client_id)
    if enabled:
        clients.enable_client(client, by=request.user, request=request)
        messages.success(
            request,
            _("%(name)s is enabled: it can get tokens again (its old tokens stay revoked).") % {"name": client.name},
        )
    else:
        clients.disable_client(client, by=request.user, request=request)
        messages.success(request, _("%(name)s is disabled and its tokens are revoked.") % {"name": client.name})
    return redirect("client", client_id=client.client_id)


@never_cache
@login_required
@require_POST
def new_registration_token(request, pk: int):
    institution = get_object_or_404(Institution, pk=pk)
    ensure_manager(request.user, institution)
    form = RegistrationTokenForm(request.POST)
    if not form.is_valid():
        messages.error(request, _("Choose at least one scope."))
        return redirect("clients", pk=institution.pk)
    try:
        token = clients.issue_registration_token(
            institution, scope=" ".join(form.cleaned_data["scopes"]), by=request.user, request=request
        )
    except clients.ClientConfigError as exc:
        messages.error(request, str(exc))
        return redirect("clients", pk=institution.pk)
    return render(
        request,
        "oauth/registration_token.html",
        {
            "institution": institution,
            "token": token,
            "metadata": server_metadata(request),
            "hours": clients.REGISTRATION_TOKEN_SECONDS // 3600,
        },
    )


def _managed_client(request, client_id: str) -> Client:
    client = get_object_or_404(
        Client.objects.select_related("institution"), client_id=client_id, disabled_at__isnull=True
    )
    ensure_manager(request.user, client.institution)
    return client


def _may_switch(user, member) -> bool:
    """Who may disable and enable a client: its institution's owners and admins, and platform staff."""
    return user.is_staff or (member is not None and member.can_manage)


def _switchable_client(request, client_id: str) -> Client:
    client = get_object_or_404(Client.objects.select_related("institution"), client_id=client_id)
    member = ensure_member(request.user, client.institution)
    if not _may_switch(request.user, member):
        raise PermissionDenied(_("Only the institution's owners and admins, or platform staff, can do this."))
    return client


def _show_secret(request, client: Client, secret: str | None, what: str):
    return render(
        request,
        "oauth/client_secret.html",
        {"client": client, "secret": secret, "what": what, "metadata": server_metadata(request)},
    )
