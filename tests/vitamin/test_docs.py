"""Documentation that must stay true: every setting the code reads is documented."""

import re

from testenv import REPO_DIR
from vitamin.env import REGISTRY


def test_every_setting_is_documented():
    documented = set(re.findall(r"^\| `([A-Z][A-Z0-9_]+)` \|", (REPO_DIR / "docs" / "settings.md").read_text(), re.M))
    missing = sorted(set(REGISTRY) - documented)
    assert not missing, f"add these to docs/settings.md: {missing}"


def test_no_documented_setting_is_stale():
    documented = set(re.findall(r"^\| `([A-Z][A-Z0-9_]+)` \|", (REPO_DIR / "docs" / "settings.md").read_text(), re.M))
    stale = sorted(documented - set(REGISTRY))
    assert not stale, f"docs/settings.md documents settings the code no longer reads: {stale}"


def test_pages_load_nothing_from_a_cdn():
    for template in (REPO_DIR / "platform").rglob("templates/**/*.html"):
        text = template.read_text()
        assert not re.search(r"""(src|href)=["']https?://""", text), f"{template} links to an external host"
