"""The whole console as one product, crawled in Chromium: one world (a real control plane and local data plane, the
default organization with two projects, components of several types, one built from a fixture and deployed, with
a release, logs and a pending production approval), its free text HOSTILE wherever the model takes free text
(display names, descriptions, annotations, a configuration value, a build's test output, an approval's reason).

A crawler signed in as the platform admin starts at /console/ and follows every same-origin link under /console
(each URL pattern a few times; never sign-out, never a POST). On every page: status < 400 (EXPECTED_404 lists the
exceptions with their reasons), no console error (CSP violations are reported there) and no page error, no dialog,
no serious or critical axe-core violation, exactly one h1 and one <main>, no duplicate id, and nothing hostile
turned into markup (the hostile strings show as text where the page shows them). Then the same crawl as a viewer:
no form of an action the viewer may not perform, and each of the admin's forms, forged by the viewer, is refused
with the API's message.
"""

from __future__ import annotations

import re
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

import pytest

from browserkit import axe
from buildkit import APPS, BuildServer, upload, wait
from consolekit import ConsoleUser, make_user, session_client, signed_in
from dataplanekit import AgentProcess, deploy, service, wait_state
from liveserver import doc

SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(1)>'
HOSTILE = f"{SCRIPT} {IMG}"
ORG = "/organizations/default"
PER_PATTERN = 3  # visits of one URL pattern
LIMIT = 120  # pages per crawl, a bound should a page link to endless new URLs
# Pages whose 404 is the answer expected today, with the reason.
EXPECTED_404: dict[str, str] = {}  # path suffix -> why its 404 is right (none: every page crawled answers)
# Segments after these are names or ids: one pattern for all of them.
NAMED = {"orgs", "projects", "components", "builds", "approvals", "promote"}


@pytest.fixture(scope="module")
def world(build_server: BuildServer, dataplane: AgentProcess) -> dict[str, Any]:
    """default org (hostile display name), projects shop and ops (hostile texts), shop/api built and deployed to
    development (a release, logs), its production promotion pending approval; shop/nightly (scheduled task) and
    ops/site (web application) unbuilt; a platform admin, a viewer."""
    c = build_server.client
    text = {"displayName": HOSTILE[:200], "description": HOSTILE}
    notes = {"cellplane.dev/note": HOSTILE, "docs": "javascript:alert(1)"}
    api = {**service(), **text, "build": {"test": f"echo '{SCRIPT}' && echo '{IMG}'"},
           "configuration": {"env": [{"name": "GREETING", "value": HOSTILE}]},
           "dependencies": [{"name": "ext", "url": "https://example.invalid/x?q=%3Cscript%3E"}]}
    docs = [doc("Organization", "default", {"displayName": HOSTILE[:200], "description": HOSTILE}),
            doc("Project", "shop", text, organization="default", annotations=notes),
            doc("Project", "ops", text, organization="default"),
            doc("Component", "api", api, organization="default", project="shop", annotations=notes),
            doc("Component", "nightly", {"type": "scheduled-task", **text, "schedule": {"cron": "0 3 * * *"}},
                organization="default", project="shop"),
            doc("Component", "site", {**service(name="web"), "type": "web-app", **text,
                                      "source": {"repository": "javascript:alert(1)"}},  # a URL the model takes
                organization="default", project="ops")]
    r = c.post("/apply", json={"documents": docs})
    assert r.status_code == 200, r.text
    build = wait(c, upload(c, "shop", "api", APPS / "echo"))
    assert build["state"] == "succeeded", build
    deploy(c, "shop", "api", "development", build=build["id"])
    ready = wait_state(c, "shop", "api")
    r = c.post(f"{ORG}/projects/shop/components/api/promotions", json={"from": "development", "to": "staging"})
    assert r.status_code in (200, 201), r.text
    server = build_server.server
    approver = server.client(make_user(server, "alice", role="approver").token)
    for decide in (True, False):  # one request rejected with a hostile reason, one pending
        r = c.post(f"{ORG}/projects/shop/components/api/promotions", json={"from": "staging", "to": "production"})
        assert r.status_code == 202, r.text
        if decide:
            pending = c.get(f"{ORG}/approvals").json()["items"]
            r = approver.post(f"{ORG}/approvals/{pending[0]['id']}/reject", json={"reason": HOSTILE})
            assert r.status_code == 200, r.text
    return {"build": build, "release": ready["release"],
            "approvals": c.get(f"{ORG}/approvals", params={"state": "all"}).json()["items"],
            "admin": make_user(server, "root", role=None, superuser=True),
            "viewer": make_user(server, "vera", role="viewer")}


def pattern(path: str) -> str:
    """/console/orgs/default/projects/shop -> /console/orgs/*/projects/*: one pattern per kind of page."""
    parts = path.rstrip("/").split("/")
    return "/".join("*" if i > 0 and parts[i - 1] in NAMED else p for i, p in enumerate(parts)) or "/"


def expected_404(path: str) -> str | None:
    for suffix, reason in EXPECTED_404.items():
        if path.endswith(suffix):
            return reason
    return None


@dataclass
class Crawl:
    visited: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    forms: dict[str, dict[str, str]] = field(default_factory=dict)  # POST action -> its fields (first seen)
    shown: Counter[str] = field(default_factory=Counter)  # pages where each hostile string shows as text


def crawl(page: Any, origin: str) -> Crawl:
    """Visits every /console link breadth-first from /console/, checking each page (see the module's doc)."""
    out = Crawl()
    events: list[str] = []
    page.on("console", lambda m: events.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: events.append(f"pageerror: {e}"))

    def dialog(d: Any) -> None:
        events.append(f"dialog {d.type}: {d.message}")
        d.dismiss()

    page.on("dialog", dialog)
    seen: Counter[str] = Counter()
    queue: deque[str] = deque(["/console/"])
    queued = {"/console/"}
    while queue and len(out.visited) < LIMIT:
        url = queue.popleft()
        path = urlsplit(url).path
        events.clear()
        response = page.goto(origin + url)
        page.wait_for_load_state("load")
        out.visited.append(url)
        status = response.status if response else 0
        reason = expected_404(path)
        if status >= 400 and not (status == 404 and reason):
            out.problems.append(f"{url}: status {status}")
            continue
        if status == 404:
            continue
        page.wait_for_timeout(50)  # a console message of a late CSP report
        out.problems += [f"{url}: {e}" for e in events]
        facts = page.evaluate("""() => {
            const ids = [...document.querySelectorAll('[id]')].map(e => e.id);
            return {
              h1: document.querySelectorAll('h1').length,
              main: document.querySelectorAll('main').length,
              dupIds: ids.filter((id, i) => ids.indexOf(id) !== i),
              scripts: [...document.scripts].filter(s => s.src === '' || s.textContent.includes('alert')).length,
              imgs: document.querySelectorAll('img[src="x"], [onerror]').length,
              jsLinks: [...document.querySelectorAll('a[href], form[action]')]
                .filter(e => /^\\s*javascript:/i.test(e.getAttribute('href') || e.getAttribute('action') || '')).length,
              text: document.body.innerText,
              links: [...document.querySelectorAll('a[href]')].map(a => a.getAttribute('href')),
              forms: [...document.querySelectorAll('form')]
                .filter(f => (f.getAttribute('method') || '').toLowerCase() === 'post')
                .map(f => [f.getAttribute('action') || location.pathname,
                           Object.fromEntries([...f.elements].filter(e => e.name)
                             .map(e => [e.name, e.type === 'checkbox' ? (e.checked ? e.value : '') : e.value]))]),
            };
        }""")
        if facts["h1"] != 1 or facts["main"] != 1:
            out.problems.append(f"{url}: {facts['h1']} h1 and {facts['main']} main")
        if facts["dupIds"]:
            out.problems.append(f"{url}: duplicate ids {sorted(set(facts['dupIds']))}")
        if facts["scripts"] or facts["imgs"] or facts["jsLinks"]:
            out.problems.append(f"{url}: hostile markup ran: {facts['scripts']} inline scripts, {facts['imgs']} "
                                f"injected images, {facts['jsLinks']} javascript: links")
        for s in (SCRIPT, IMG):
            out.shown[s] += s in facts["text"]
        serious = [f"{v['id']} ({v.get('impact')}): {v.get('help')} at {[n['target'] for n in v['nodes'][:3]]}"
                   for v in axe(page) if v.get("impact") in ("serious", "critical")]
        out.problems += [f"{url}: axe {s}" for s in serious]
        for action, fields in facts["forms"]:
            out.forms.setdefault(urlsplit(urljoin(origin + path, action)).path, fields)
        for href in facts["links"]:
            target = urlsplit(urljoin(origin + url, href))
            if f"{target.scheme}://{target.netloc}" != origin or not target.path.startswith("/console"):
                continue
            if target.path.startswith("/console/static") or target.path == "/console/sign-out":
                continue
            link = target.path + (f"?{target.query}" if target.query else "")
            if link in queued:
                continue
            key = pattern(target.path)
            if seen[key] >= PER_PATTERN:
                continue
            seen[key] += 1
            queued.add(link)
            queue.append(link)
    return out


def test_every_console_page_reached_by_links_is_sound_and_shows_hostile_text_as_text(
        page: Any, build_server: BuildServer, world: dict[str, Any]) -> None:
    origin = build_server.server.url
    signed_in(page, build_server.server, world["admin"])
    result = crawl(page, origin)
    assert result.problems == [], "\n".join(result.problems)
    patterns = {pattern(urlsplit(u).path) for u in result.visited}
    for must in ("/console/orgs/*", "/console/orgs/*/members", "/console/orgs/*/environments",
                 "/console/orgs/*/pipeline", "/console/orgs/*/audit", "/console/orgs/*/approvals",
                 "/console/orgs/*/approvals/*", "/console/orgs/*/projects/*", "/console/orgs/*/projects/*/new",
                 "/console/orgs/*/projects/*/components/*", "/console/orgs/*/projects/*/components/*/build",
                 "/console/orgs/*/projects/*/components/*/builds/*",
                 "/console/orgs/*/projects/*/components/*/deploy"):
        assert must in patterns, (must, sorted(patterns))
    assert result.shown[SCRIPT] >= 3 and result.shown[IMG] >= 3, result.shown
    world["forms"] = result.forms
    print(f"\ncrawled {len(result.visited)} pages, {len(patterns)} patterns, {len(result.forms)} POST forms")


# What a forged form sends in a field its page leaves empty (else a valid name).
FILL = {"descriptor": "apiVersion: cellplane.dev/v1alpha1\nkind: Component\nmetadata: {name: forged}\nspec: {}\n"}
# A form the viewer may see: signing out.
VIEWER_FORMS = {"/console/sign-out"}


def test_a_viewer_sees_no_form_it_may_not_use_and_every_forged_one_is_refused_with_the_apis_message(
        page: Any, build_server: BuildServer, world: dict[str, Any]) -> None:
    origin = build_server.server.url
    viewer: ConsoleUser = world["viewer"]
    signed_in(page, build_server.server, viewer)
    result = crawl(page, origin)
    assert result.problems == [], "\n".join(result.problems)
    assert set(result.forms) <= VIEWER_FORMS, sorted(set(result.forms) - VIEWER_FORMS)
    assert len(result.visited) > 15, result.visited

    forms = world.get("forms") or {}
    assert forms, "the admin's crawl runs first and collects its forms"
    client = session_client(build_server.server, viewer)
    refused = []
    for action, fields in sorted(forms.items()):
        if action in VIEWER_FORMS:
            continue
        # empty fields filled with a valid name, so that the API's answer is about permission, not the body
        r = client.form(action, {k: v or FILL.get(k, "forged") for k, v in fields.items() if k != "csrf"})
        assert r.status_code == 403, (action, r.status_code, r.text[:2000])
        message = re.search(r'role="alert"[^>]*>\s*(?:<p>)?([^<]+)', r.text)
        refused.append(f"{action}: {message.group(1).strip() if message else ''}")
        assert message and re.search(r"[a-z-]+:[a-z-]+|\bmay\b|\bonly\b", message.group(1)), (
            action, r.text[:3000])
    assert len(refused) >= 5, refused
    print(f"\nviewer crawled {len(result.visited)} pages; {len(refused)} forged forms refused:", *refused, sep="\n")


def main_pages(world: dict[str, Any]) -> list[str]:
    """One URL of each of the console's main pages in the world."""
    org, comp = "/console/orgs/default", "/console/orgs/default/projects/shop/components/api"
    approval = next(a["id"] for a in world["approvals"] if a["state"] == "pending")
    return ["/console/", org, f"{org}/members", f"{org}/environments", f"{org}/pipeline", f"{org}/audit",
            f"{org}/approvals", f"{org}/approvals/{approval}", f"{org}/projects/shop", f"{org}/projects/shop/new",
            comp, f"{comp}/build", f"{comp}/builds/{world['build']['id']}", f"{comp}/deploy"]


FOCUSED = """() => { const e = document.activeElement, s = getComputedStyle(e);
  return {tag: e.tagName, text: (e.innerText || e.getAttribute('aria-label') || e.id || '').slice(0, 60),
          skip: e.classList.contains('skip'), outline: s.outlineStyle, width: s.outlineWidth}; }"""


@pytest.mark.parametrize("where", ["/console/orgs/default/projects/shop",
                                   "/console/orgs/default/projects/shop/components/api/deploy"])
def test_tabbing_through_a_page_starts_at_the_skip_link_and_every_focus_is_visible(
        page: Any, build_server: BuildServer, world: dict[str, Any], where: str) -> None:
    signed_in(page, build_server.server, world["admin"], where)
    page.keyboard.press("Tab")
    first = page.evaluate(FOCUSED)
    assert first["skip"], first
    stops = []
    for _ in range(80):  # the pages have fewer stops than this: the loop ends back at the document
        focused = page.evaluate(FOCUSED)
        if focused["tag"] == "BODY":
            break
        stops.append(focused)
        assert focused["outline"] != "none" and focused["width"] != "0px", focused
        page.keyboard.press("Tab")
    assert len(stops) >= 8, stops
    # the skip link leads to the main content
    page.goto(build_server.server.url + where)
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"


def test_no_main_page_scrolls_sideways_at_640_px_as_at_200_percent_zoom(
        page: Any, build_server: BuildServer, world: dict[str, Any]) -> None:
    signed_in(page, build_server.server, world["admin"])
    page.set_viewport_size({"width": 640, "height": 480})
    wide = {}
    for path in main_pages(world):
        page.goto(build_server.server.url + path)
        if page.evaluate("document.documentElement.scrollWidth") > 640:
            wide[path] = page.evaluate(
                "[...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > 640)"
                ".map(e => e.tagName + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().right))"
                ".slice(0, 8)")
    assert wide == {}, wide


def test_the_copy_buttons_put_a_url_and_a_cli_line_on_the_clipboard(browser: Any, build_server: BuildServer,
                                                                     world: dict[str, Any]) -> None:
    context = browser.new_context(permissions=["clipboard-read", "clipboard-write"])
    try:
        page = context.new_page()
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        signed_in(page, build_server.server, world["admin"], "/console/orgs/default/projects/shop/components/api")
        urls = page.get_by_role("region", name="URLs per environment")
        link = urls.locator(".copyable a").first
        button = urls.locator("button.copy").first
        assert button.get_attribute("aria-label") == "Copy " + link.inner_text()
        button.click()
        page.wait_for_function("b => b.dataset.copied", arg=button.element_handle())
        assert page.evaluate("navigator.clipboard.readText()") == link.inner_text()
        assert page.locator("#flash").inner_text() == "Copied to the clipboard."
        cli = page.locator(".cli").first
        cli.get_by_role("button", name="Copy the command").click()
        page.wait_for_function("b => b.dataset.copied", arg=cli.locator("button.copy").element_handle())
        assert page.evaluate("navigator.clipboard.readText()") == cli.locator("code").inner_text()
        assert errors == []
    finally:
        context.close()


def test_without_javascript_the_pages_show_no_copy_button_and_still_show_the_urls(
        browser: Any, build_server: BuildServer, world: dict[str, Any]) -> None:
    context = browser.new_context(java_script_enabled=False)
    try:
        page = context.new_page()
        signed_in(page, build_server.server, world["admin"], "/console/orgs/default/projects/shop/components/api")
        urls = page.get_by_role("region", name="URLs per environment")
        assert urls.locator(".copyable a").count() >= 1
        assert page.locator("button.copy").count() == 0
    finally:
        context.close()
