"""How the component pages' actions answer: a plain form POST gets a 303 back to its page (the browser follows it,
so every form works without JavaScript); the same POST made by htmx (header ``HX-Request``) gets the page rendered
at once, with the result put in the live region (``flash``), and the form's ``hx-select`` takes the card or table
it needs out of it; an action that lands on another page answers htmx with ``HX-Redirect`` (a full navigation).
No extra API request either way: the 303 costs the same page render one round trip later."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import RedirectResponse, Response


def by_htmx(request: Request) -> bool:
    """Whether htmx made the request (it sends ``HX-Request: true``; a boosted or history request is not ours)."""
    return request.headers.get("hx-request") == "true" and not request.headers.get("hx-history-restore-request")


def go(request: Request, url: str) -> Response:
    """Send the browser to ``url``: a 303 for a plain form, ``HX-Redirect`` (204, nothing swapped) for htmx."""
    if by_htmx(request):
        return Response(status_code=204, headers={"HX-Redirect": url})
    return RedirectResponse(url, status_code=303)
