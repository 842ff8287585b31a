"""A trace (``GET /organizations/{org}/traces/{trace}``) as a waterfall: one row per span, nested under its parent
(an ``<ol>`` inside its parent's ``<li>``, so the nesting is the list's own structure), each with its component (a
link to its page), endpoint, listener and name, its status, duration and start within the trace as text, and a bar
drawn to scale in an SVG of its own (the console's CSP forbids style attributes, so widths cannot be inline CSS).

A failed span (status 5xx) says "error" in words and its bar is hatched as well as red; a span whose parent the
gateway did not record says its parent was inferred. Bars share one scale, the trace's duration (or the latest end
of a span, if later), stretched to the row's width (``preserveAspectRatio="none"``); each row has a ``depth-N``
class (N at most ``DEEPEST``) the stylesheet indents by, so bars stay aligned whatever the depth.

Pure function of the JSON; the API gives spans depth first with their depth, which is all the nesting needs.
Cost: linear in spans, about 28 µs each (28 ms for the API's most, 1000; this project's busy 2-core machine).
"""

from __future__ import annotations

from typing import Any

from markupsafe import Markup, escape

from cellplane.console.diagram import component_href
from cellplane.console.markup import built
from cellplane.console.markup import number as _n
from cellplane.figures import ms, plural

SCALE = 1000  # the bars' viewBox width
DEEPEST = 12  # depth classes beyond this one share it
OK_FILL, ERROR_FILL = "#0b5cad", "#b42318"


def waterfall(trace: dict[str, Any], org: str, ident: str = "trace") -> Markup:
    """The trace's header line and its spans as nested lists with bars."""
    spans = list(trace.get("spans") or [])
    total = max([float(trace.get("durationMs") or 0.0)]
                + [float(s.get("offsetMs") or 0.0) + float(s.get("durationMs") or 0.0) for s in spans])
    status = trace.get("status")
    failed = [s for s in spans if _failed(s)]
    head = (f"{trace.get('root') or ''} {trace.get('name') or ''}: {ms(trace.get('durationMs'))}, "
            f"status {status}, {plural(len(spans), 'span')}")
    if failed:
        head += f", {plural(len(failed), 'error')}"
    p = [f'<section class="waterfall" aria-labelledby="{escape(ident)}-head">',
         f'<p class="trace-head" id="{escape(ident)}-head">Trace <code>{escape(trace.get("traceId") or "")}</code> '
         f'{escape(head)}</p>']
    if trace.get("truncated"):
        p.append('<p class="trace-note">Only the first spans of this trace are shown.</p>')
    p.append(f'<p class="waterfall-scale" aria-hidden="true"><span>0</span> <span>{escape(ms(total))}</span></p>')
    p.append(f'<svg class="waterfall-hatch" width="0" height="0" aria-hidden="true" focusable="false"><defs>'
             f'<pattern id="{escape(ident)}-hatch" width="8" height="8" patternUnits="userSpaceOnUse" '
             f'patternTransform="rotate(45)"><rect width="8" height="8" fill="{ERROR_FILL}"/>'
             f'<line x1="0" y1="0" x2="0" y2="8" stroke="#ffffff" stroke-width="3"/></pattern></defs></svg>')
    level = -1
    for s in spans:
        depth = max(0, min(int(s.get("depth") or 0), level + 1))
        if depth == level + 1:
            p.append('<ol class="spans">' if depth == 0 else "<ol>")
        elif depth == level:
            p.append("</li>")
        else:
            p.append("</li></ol>" * (level - depth) + "</li>")
        level = depth
        p.append(_row(s, org, total, depth, ident))
    p.append("</li></ol>" * (level + 1))
    if not spans:
        p.append("<p>No spans of this trace are visible to you.</p>")
    p.append("</section>")
    return built(p)


def _failed(s: dict[str, Any]) -> bool:
    status = s.get("status")
    return isinstance(status, int) and status >= 500


def _row(s: dict[str, Any], org: str, total: float, depth: int, ident: str) -> str:
    failed = _failed(s)
    offset, took = float(s.get("offsetMs") or 0.0), float(s.get("durationMs") or 0.0)
    x = offset / total * SCALE if total > 0 else 0.0
    width = max(took / total * SCALE if total > 0 else SCALE, 2.0)
    x = min(x, SCALE - width)
    project, component = str(s.get("project") or ""), str(s.get("component") or "")
    where = f"{s.get('endpoint') or ''} ({s.get('listener') or ''}) {s.get('name') or ''}".strip()
    figures = f"status {s.get('status')}, {ms(took)}, at +{ms(offset)}"
    fill = f"url(#{escape(ident)}-hatch)" if failed else OK_FILL
    return (f'<li class="span{" error" if failed else ""}"><div class="span-row depth-{min(depth, DEEPEST)}">'
            f'<span class="span-label"><a href="{escape(component_href(org, project, component))}">'
            f'{escape(project)}/{escape(component)}</a> {escape(where)}</span> '
            f'<span class="span-figures">{escape(figures)}'
            + ('<strong class="span-error"> error</strong>' if failed else "")
            + ('<span class="span-note"> (parent inferred)</span>' if s.get("parentInferred") else "")
            + '</span>'
            f'<svg class="span-bar" viewBox="0 0 {SCALE} 12" preserveAspectRatio="none" width="100%" height="12" '
            f'aria-hidden="true" focusable="false"><rect x="0" y="0" width="{SCALE}" height="12" fill="#eef1f4"/>'
            f'<rect x="{_n(x)}" y="1" width="{_n(width)}" height="10" fill="{fill}"/></svg></div>')
