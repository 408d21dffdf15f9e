"""The portal page where an institution's owner or admin downloads a Delta Sharing profile for one of its clients.

GET shows the choice between the two kinds of profile; POST makes one (`sharing.profiles.profile`,
which issues the token or rotates the secret and audits it) and answers it as a `.share` file.
Only managers of the client's institution may do either: the profile holds a credential, shown
this once and never stored in clear.
"""

from __future__ import annotations

import json

from django import forms
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, render
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from institutions.access import ensure_manager
from oauth.models import Client, GrantType
from sharing.profiles import SCOPE, ProfileError, profile


class ProfileForm(forms.Form):
    version = forms.TypedChoiceField(
        choices=[
            (1, _("Version 1: a bearer token")),
            (2, _("Version 2: OAuth client credentials")),
        ],
        coerce=int,
        initial=1,
        widget=forms.RadioSelect,
        label=_("Kind of profile"),
    )


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def sharing_profile(request, client_id: str):
    client = get_object_or_404(
        Client.objects.select_related("institution"), client_id=client_id, disabled_at__isnull=True
    )
    ensure_manager(request.user, client.institution)
    form = ProfileForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            document = profile(client, version=form.cleaned_data["version"], request=request, by=request.user)
        except ProfileError as exc:
            form.add_error(None, str(exc))
        else:
            response = HttpResponse(json.dumps(document, indent=2) + "\n", content_type="application/json")
            response["Content-Disposition"] = f'attachment; filename="vitamin-{client.client_id}.share"'
            return response
    return render(
        request,
        "sharing/profile.html",
        {
            "client": client,
            "form": form,
            "token_days": settings.SHARING_TOKEN_DAYS,
            "overlap": _duration(settings.CLIENT_SECRET_OVERLAP_SECONDS),
            "has_scope": SCOPE in client.scope.split(),
            "has_client_credentials": GrantType.CLIENT_CREDENTIALS in client.grant_types,
        },
        status=400 if form.errors else 200,
    )


def _duration(seconds: int) -> str:
    """A setting's seconds for people: "24 hours", "90 minutes", "45 seconds"."""
    if seconds >= 3600 and seconds % 3600 == 0:
        return ngettext("%(count)d hour", "%(count)d hours", seconds // 3600) % {"count": seconds // 3600}
    if seconds >= 60 and seconds % 60 == 0:
        return ngettext("%(count)d minute", "%(count)d minutes", seconds // 60) % {"count": seconds // 60}
    return ngettext("%(count)d second", "%(count)d seconds", seconds) % {"count": seconds}
