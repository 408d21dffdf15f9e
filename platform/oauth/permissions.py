"""Scope checks for API views, on top of BearerTokenAuthentication.

    permission_classes = [require_scope("query")]
    # or: permission_classes = [HasScope]; required_scope = "query"  (on the view)

Without a valid token DRF answers 401 (from the authentication class). With a
token that lacks the scope the answer is 403 `insufficient_scope`, naming it.
"""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured
from rest_framework.permissions import BasePermission

from oauth.authentication import REALM
from oauth.models import Token
from oauth.scopes import SCOPES
from vitamin.errors import ApiError


class HasScope(BasePermission):
    scope: str | None = None  # set by require_scope; otherwise read from view.required_scope

    def has_permission(self, request, view) -> bool:
        required = self.scope or getattr(view, "required_scope", None)
        if required not in SCOPES:
            raise ImproperlyConfigured(f"{view.__class__.__name__} needs a required_scope from {', '.join(SCOPES)}")
        token = request.auth
        if not isinstance(token, Token):
            return False
        if required in token.scopes:
            return True
        raise ApiError(
            f"This request needs the '{required}' scope, which the access token does not have.",
            code="insufficient_scope",
            status_code=403,
            details={"required_scope": required},
            headers={"WWW-Authenticate": f'Bearer realm="{REALM}", error="insufficient_scope", scope="{required}"'},
        )


def require_scope(scope: str) -> type[HasScope]:
    if scope not in SCOPES:
        raise ImproperlyConfigured(f"Unknown scope {scope!r}; known: {', '.join(SCOPES)}")
    return type(f"HasScope[{scope}]", (HasScope,), {"scope": scope})
