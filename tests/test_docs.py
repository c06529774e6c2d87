"""The README stays short and true to what a user runs; the docs site's pages exist (CI also runs
``mkdocs build --strict``, which checks every link and API name)."""

from __future__ import annotations

import re

from conftest import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_readme_is_short_and_names_every_class_and_uncertain():
    assert len(README.splitlines()) <= 200
    first = README.split("\n## ", 1)[0]
    for word in ("with_mask", "without_mask", "mask_incorrect", "uncertain"):
        assert word in first, word


def test_readme_quickstart_installs_runs_and_says_how_browser_tests_get_chromium():
    blocks = re.findall(r"```bash\n(.*?)```", README.split("## Quickstart", 1)[1], re.S)
    first, second = blocks[0], blocks[1]
    assert 'pip install -e ".[serve]"' in first and "maskwatch detect ../shared/data/video/" in first
    assert "apt-get install -y chromium" in second and "python -m pytest" in second


def test_readme_links_point_at_files_in_the_repository():
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", README)
    local = [x for x in links if "://" not in x]
    assert local, "the README links to the docs pages"
    assert [x for x in local if not (ROOT / x).exists()] == []


def test_every_page_in_the_site_nav_exists():
    nav = re.findall(r":\s*([\w./-]+\.md)\s*$", (ROOT / "mkdocs.yml").read_text(encoding="utf-8"), re.M)
    assert "index.md" in nav and "architecture.md" in nav
    assert [p for p in nav if not (ROOT / "docs" / p).is_file()] == []
