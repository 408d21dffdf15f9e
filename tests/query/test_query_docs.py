"""docs/query.md stays true to the code: every error code and format is documented."""

from __future__ import annotations

import re

from datasets.query.errors import Code
from datasets.query.formats import MEDIA_TYPES
from testenv import REPO_DIR

DOC = (REPO_DIR / "docs" / "query.md").read_text()


def test_every_error_code_is_documented():
    documented = set(re.findall(r"^\| `([a-z_]+)` \| (?:rejected|failed) \|", DOC, re.M))
    assert documented == {code.value for code in Code}


def test_every_format_is_documented_with_its_media_type():
    for name, media_type in MEDIA_TYPES.items():
        assert f"| `{name}` | `{media_type}` |" in DOC
