"""The Vitamin Django project: settings, URLs, entry points and cross-cutting plumbing."""

from vitamin.celery import app as celery_app

__all__ = ["celery_app"]
