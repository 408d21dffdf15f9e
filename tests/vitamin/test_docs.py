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


# Capabilities the README lists under "Planned", with a URL each would be served at and the words
# that advertise it. While a URL does not resolve, the words may appear only next to "planned".
PLANNED = {
    "Delta Sharing": ("/delta-sharing/shares", r"delta sharing"),
}


def _served(path: str) -> bool:
    from django.urls import Resolver404, resolve

    try:
        resolve(path)
    except Resolver404:
        return False
    return True


def test_what_is_not_served_is_advertised_only_as_planned():
    readme = (REPO_DIR / "README.md").read_text()
    before_planned, _, planned = readme.partition("\n## Planned\n")
    assert planned, "README.md has a Planned section"
    home = (REPO_DIR / "platform" / "portal" / "templates" / "portal" / "home.html").read_text()
    from django.conf import settings

    from oauth.scopes import SCOPES

    texts = {
        "README.md (before Planned)": before_planned,
        "home page": home,
        "API description": settings.SPECTACULAR_SETTINGS["DESCRIPTION"],
        **{f"scope {name}": text for name, text in SCOPES.items()},
    }
    for capability, (path, words) in PLANNED.items():
        if _served(path):
            continue
        assert re.search(words, planned, re.I), f"README's Planned section should name {capability}"
        for where, text in texts.items():
            for sentence in re.split(r"(?<=[.;])\s", text):
                if re.search(words, sentence, re.I):
                    assert "planned" in sentence.lower(), f"{where} advertises {capability}: {sentence!r}"


def test_every_reference_to_a_file_of_the_project_resolves():
    """Docs, docstrings and comments name files of this repository only, and only files that exist."""
    path_pattern = re.compile(
        r"(?<![\w/.-])((?:docs|platform|datasets|connectors|tests|bench|examples)/[\w/.-]*\w\.(?:md|py|yaml|txt|html))"
    )
    link_pattern = re.compile(r"\]\(([\w.-]+\.md)(?:#[\w-]*)?\)")
    sources = [*REPO_DIR.glob("*.md"), *(REPO_DIR / "docs").glob("*.md")]
    for folder in ("platform", "datasets", "connectors", "tests", "bench"):
        sources += [path for path in (REPO_DIR / folder).rglob("*.py") if "migrations" not in path.parts]
    missing = []
    for source in sources:
        text = source.read_text()
        for reference in path_pattern.findall(text):
            absent_on_purpose = reference == "platform/__init__.py"  # docs/architecture.md says why
            if not absent_on_purpose and "{" not in reference and not (REPO_DIR / reference).exists():
                missing.append(f"{source.relative_to(REPO_DIR)}: {reference}")
        if source.suffix == ".md":
            for link in link_pattern.findall(text):
                if not (source.parent / link).exists():
                    missing.append(f"{source.relative_to(REPO_DIR)}: link {link}")
    assert not missing, "\n".join(missing)
