"""WSGI entry point (gunicorn vitamin.wsgi)."""

import os
import sys
from pathlib import Path

_platform_dir = str(Path(__file__).resolve().parents[1])
if _platform_dir not in sys.path:
    sys.path.append(_platform_dir)  # appended: never shadow the standard library's `platform`

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "vitamin.settings")

from django.core.wsgi import get_wsgi_application  # noqa: E402

application = get_wsgi_application()
