"""How the OpenAPI schema describes our bearer tokens: OAuth 2.0, with this server's token endpoint and scopes."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension

from oauth.scopes import SCOPES


class BearerTokenScheme(OpenApiAuthenticationExtension):
    target_class = "oauth.authentication.BearerTokenAuthentication"
    name = "oauth2"

    def get_security_definition(self, auto_schema):
        scopes = dict(SCOPES)
        return {
            "type": "oauth2",
            "description": "Access tokens from /oauth/token (see docs/oauth.md).",
            "flows": {
                "clientCredentials": {"tokenUrl": "/oauth/token", "scopes": scopes},
                "authorizationCode": {
                    "authorizationUrl": "/oauth/authorize",
                    "tokenUrl": "/oauth/token",
                    "scopes": scopes,
                },
            },
        }
