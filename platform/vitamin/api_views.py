"""Small API views that belong to no single app."""

from django.conf import settings
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.decorators import api_view, permission_classes
from rest_framework.permissions import AllowAny
from rest_framework.response import Response


@extend_schema(
    summary="Service identity and version",
    responses=inline_serializer("Status", {"service": serializers.CharField(), "version": serializers.CharField()}),
)
@api_view(["GET"])
@permission_classes([AllowAny])
def get_status(request):
    return Response({"service": "vitamin", "version": settings.SPECTACULAR_SETTINGS["VERSION"]})
