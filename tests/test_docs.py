"""The documentation: README.md is the front page, docs/ the reference site (MkDocs, issue 21).

A user follows links: the site must build with no broken link or anchor, the README's links
must land on a page and a heading that exist, and no section the README once documented may
vanish when text moves between the README and docs/.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from markdown.extensions.toc import slugify

REPO = Path(__file__).resolve().parents[1]

# Every heading of the README before its reference moved to docs/ (issue 21): each must still
# be a heading of the README or of a docs page (the engine's README is included in the site).
SECTIONS = [
    "Escalator",
    "Set up, run, test",
    "A Kafka broker without Docker",
    "Configuration: one set of names for every service",
    "Logs",
    "Layout",
    "Replay: the SLA core on a history",
    "The event contract",
    "Policies",
    "Business calendars",
    "Several policies in one file",
    "Next response, periodic updates, warnings before the breach, repeating escalations",
    "The default policy: the Clevr seed",
    "SLA rules",
    "Event time: the watermark, late events and corrections",
    "The streaming engine",
    "Projections: views for ops teams",
    "Ingest: HTTP in front of `ticket-events`",
    "Notify: SLA events to webhooks, Slack, e-mail and PagerDuty",
    "End to end: a Zendesk webhook to a webhook receiver and a mailbox",
    "Reliability: what is guaranteed, and how it is tested",
    "Benchmarks",
]

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def headings(path: Path) -> list[str]:
    """The Markdown headings of a file, outside fenced code blocks."""
    found, fenced = [], False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and (match := re.match(r"#{1,6} (.+)", line)):
            found.append(match.group(1).strip())
    return found


def anchor(heading: str) -> str:
    """The id MkDocs (Python-Markdown's toc) and GitHub give a plain-text heading."""
    return slugify(heading.replace("`", ""), "-")


def test_the_site_builds_in_strict_mode(tmp_path: Path) -> None:
    """`mkdocs build --strict`: a broken link, a missing anchor or a page left out fails it."""
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        check=False,
        timeout=120,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "WARNING" not in output, output
    built = (tmp_path / "engine-internals" / "index.html").read_text(encoding="utf-8")
    assert "Exactly once: who owns what" in built  # the engine's README, included


def test_the_readme_links_land_on_pages_and_headings_that_exist() -> None:
    readme = REPO / "README.md"
    links = [t for t in LINK.findall(readme.read_text(encoding="utf-8")) if "://" not in t]
    assert len(links) >= 10, links  # the front page links the reference
    for target in links:
        file, _, fragment = target.partition("#")
        page = (REPO / file) if file else readme
        assert page.is_file(), f"README links to {target}: no such file"
        if fragment:
            ids = {anchor(h) for h in headings(page)}
            assert fragment in ids, f"README links to {target}: no such heading"


def test_every_section_the_readme_had_is_still_documented() -> None:
    pages = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    pages.append(REPO / "streams" / "engine" / "README.md")
    documented = {h for page in pages for h in headings(page)}
    missing = [s for s in SECTIONS if s not in documented]
    assert not missing, f"sections no page documents any more: {missing}"


def test_the_readme_stays_a_front_page() -> None:
    """Set-up, run, test, a tour and links; the reference belongs in docs/ (issue 21: <= 250)."""
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines; move reference text to docs/"
