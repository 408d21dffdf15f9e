"""Liveness and readiness probes.

/healthz answers while the process runs. /readyz checks each dependency a
request may need (database, broker, Parquet store) and answers 503 when any
fails, listing every check so an operator sees which.
"""

from __future__ import annotations

import time

from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from datasets.storage import Store


def _check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def _check_broker() -> None:
    from vitamin.celery import app

    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)
        conn.default_channel.close()  # opening a channel proves the transport really answers


def _check_store() -> None:
    Store.from_url(settings.STORE_URL).check()


CHECKS = {"database": _check_database, "broker": _check_broker, "store": _check_store}


@never_cache
@require_GET
def healthz(request):
    return JsonResponse({"status": "ok"})


@never_cache
@require_GET
def readyz(request):
    results = {}
    for name, check in CHECKS.items():
        started = time.perf_counter()
        try:
            check()
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready"; the class name is enough to act on
            results[name] = {"ok": False, "error": type(exc).__name__}
        else:
            results[name] = {"ok": True}
        results[name]["ms"] = round((time.perf_counter() - started) * 1000, 1)
    ready = all(r["ok"] for r in results.values())
    response = JsonResponse(
        {"status": "ready" if ready else "not_ready", "checks": results}, status=200 if ready else 503
    )
    if not ready:
        response["Retry-After"] = str(settings.OUTAGE_RETRY_AFTER_SECONDS)
    return response
