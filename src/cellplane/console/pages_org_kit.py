"""What the organization's pages share: the tabs, the page frame (the organization read first, its refusal as the
page's error state; the pending approvals' count for the Approvals tab), paging through a list to its end."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

from fastapi.responses import HTMLResponse

from cellplane.console.apicall import ApiProblem
from cellplane.console.viewer import Viewer

# (tab, label, path below /console/orgs/{org})
TABS = (("projects", "Projects", ""), ("members", "Members", "/members"),
        ("environments", "Environments", "/environments"), ("pipeline", "Pipeline", "/pipeline"),
        ("approvals", "Approvals", "/approvals"), ("audit", "Audit", "/audit"))
MAX_PAGES = 20  # a list read to its end stops after this many pages of 1000 (the page says it stopped)


def base(org: str) -> str:
    return f"/console/orgs/{within(org)}"


def within(name: str) -> str:
    """A path segment, escaped (names are DNS labels once the API accepted them; a stray one stays one segment)."""
    return quote(name, safe="")


def crumbs(org: str, *more: tuple[str, str]) -> list[tuple[str, str]]:
    return [("Organizations", "/console/"), (org, base(org)), *more]


async def page_all(v: Viewer, path: str, **params: Any) -> list[dict[str, Any]]:
    """Every item of a list the API pages with ``continue`` (pages of 1000, at most ``MAX_PAGES``)."""
    items: list[dict[str, Any]] = []
    cont = None
    for _ in range(MAX_PAGES):
        found = await v.api.get(path, limit=1000, **{"continue": cont}, **params)
        items += found.get("items", [])
        cont = (found.get("metadata") or {}).get("continue")
        if not cont:
            break
    return items


async def pending_count(v: Viewer, org: str) -> int | None:
    """How many approval requests wait that the viewer may see (None when the API refuses the list)."""
    try:
        return len((await v.api.get(f"/organizations/{org}/approvals", state="pending"))["items"])
    except ApiProblem:
        return None


async def org_page(v: Viewer, org: str, tab: str, template: str, load: Callable[[], Awaitable[dict[str, Any]]],
                   status: int = 200, **context: Any) -> HTMLResponse:
    """The organization's page ``template`` with ``load()``'s data, the tabs and breadcrumbs. The organization's
    own refusal (404, 403) is the error page; a refusal of the page's data is the tab's error state."""
    label = next(label for t, label, _ in TABS if t == tab)
    frame: dict[str, Any] = {"org": org, "base": base(org), "tab": tab, "tabs": TABS,
                             "breadcrumbs": crumbs(org, (label, base(org) + dict((t, p) for t, _, p in TABS)[tab]))}
    try:
        frame["organization"] = await v.api.get(f"/organizations/{within(org)}")
    except ApiProblem as e:
        return v.problem(e, breadcrumbs=crumbs(org))
    frame["pending"] = await pending_count(v, org)
    try:
        data = await load()
    except ApiProblem as e:
        return v.render("org/failed.html", status=e.status, failed=e, label=label, **frame)
    return v.render(template, status=status, **frame, **data, **context)
