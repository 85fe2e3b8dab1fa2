"""axe-core audits of the page in Chromium: WCAG 2.1 A/AA and axe's best practices.

The script is the vendored ``data/axe-core/axe.min.js`` (see its README), checked against its
digest, then evaluated through the DevTools protocol (``page.evaluate``), which the page's
Content-Security-Policy (``script-src 'self'``) does not restrict, as it does not restrict any
extension a person's browser runs.
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path
from typing import Any

from playwright.sync_api import Page

AXE = Path(__file__).parent / "data" / "axe-core" / "axe.min.js"
AXE_SHA256 = "29348999450cdf2849a8e70b7912fc2da85a849da39c0d0d5394f51d4a9ed95c"
TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]


@cache
def _source() -> str:
    data = AXE.read_bytes()
    assert hashlib.sha256(data).hexdigest() == AXE_SHA256, f"{AXE} is not axe-core 4.14.1"
    return data.decode("utf-8")


def violations(page: Page, context: str = "document") -> list[dict[str, Any]]:
    """axe's violations on the page as it is now (its rules for ``TAGS``), each with the rule,
    its impact, what it says, and the elements it found."""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(_source())
    found: list[dict[str, Any]] = page.evaluate(
        """async ([context, tags]) => {
            const result = await axe.run(context === "document" ? document : context,
                                         { runOnly: { type: "tag", values: tags } });
            return result.violations.map((v) => ({
                id: v.id, impact: v.impact, help: v.help,
                nodes: v.nodes.map((n) => ({ target: n.target, summary: n.failureSummary })),
            }));
        }""",
        [context, TAGS],
    )
    return found


def assert_accessible(page: Page, state: str) -> None:
    """No violation at all in ``state`` (named in the failure)."""
    found = violations(page)
    assert not found, f"axe-core found violations in {state}:\n" + "\n".join(
        f"- {v['id']} ({v['impact']}): {v['help']}; "
        + "; ".join(f"{' '.join(map(str, n['target']))}: {n['summary']}" for n in v["nodes"][:5])
        for v in found
    )
