"""WSGI entry point (gunicorn vitamin.wsgi)."""

import gc
import os
import sys
from pathlib import Path

_platform_dir = str(Path(__file__).resolve().parents[1])
if _platform_dir not in sys.path:
    sys.path.append(_platform_dir)  # appended: never shadow the standard library's `platform`

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "vitamin.settings")

from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.urls import get_resolver  # noqa: E402

application = get_wsgi_application()
get_resolver().url_patterns  # noqa: B018 - imports every view now, as the first request would

# What is loaded by now (Django, DRF, DuckDB, Arrow, the project) lives as long as the process: kept
# out of the collector's full passes, each of which holds every thread of the process while it walks
# the heap (85 to 270 ms under 8 clients before; docs/operations.md, "Garbage collection").
gc.freeze()
