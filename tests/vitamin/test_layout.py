"""The source layout keeps the standard library's `platform` module reachable."""

import platform
import sys

from testenv import REPO_DIR


def test_import_platform_is_the_standard_library():
    assert hasattr(platform, "python_version"), platform.__file__
    assert platform.__file__.startswith(sys.base_prefix) or "lib/python" in platform.__file__
    assert not platform.__file__.startswith(str(REPO_DIR / "platform"))


def test_platform_folder_is_not_a_package():
    assert not (REPO_DIR / "platform" / "__init__.py").exists()
    assert not (REPO_DIR / "platform" / "platform.py").exists()


def test_uuid_and_celery_import_cleanly():
    import uuid

    import celery

    assert uuid.uuid4().version == 4
    assert celery.__version__


def test_plain_libraries_never_import_django():
    for folder in ("datasets", "connectors"):
        for source in (REPO_DIR / folder).rglob("*.py"):
            text = source.read_text()
            assert "import django" not in text and "from django" not in text, source
