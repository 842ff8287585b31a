"""Markup the console's renderers (diagram, charts, waterfall) write by hand: the one place their joined parts
become ``Markup``, and the one way they write numbers into SVG attributes."""

from __future__ import annotations

from markupsafe import Markup


def built(parts: list[str]) -> Markup:
    """Markup from parts written by a renderer, where every value from the API went through ``markupsafe.escape``
    (names, URLs, states: anything a user or a workload chose) and numbers through ``number``."""
    return Markup("".join(parts))  # noqa: S704 -- each part escapes its values where it is made


def number(value: float) -> str:
    """A coordinate or length for an SVG attribute: one decimal at most, no trailing zeros."""
    return f"{value:.1f}".rstrip("0").rstrip(".")
