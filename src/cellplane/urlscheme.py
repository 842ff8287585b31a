"""Moved to ``cellplane.contract.urlscheme`` (the URL scheme is part of the contract between the planes); kept as a
re-export for the data plane's importers until they import the contract package."""

from cellplane.contract.urlscheme import route_prefix

__all__ = ["route_prefix"]
