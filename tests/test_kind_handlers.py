"""Every kind of resource has its handler (controlplane/kindhandlers.py): what storing or deleting one sets off is
declared once per kind, so a kind added to the model without one is noticed here rather than by a deletion that
leaves rows behind."""

from __future__ import annotations

from cellplane.controlplane.kindhandlers import HANDLERS
from cellplane.model import KINDS


def test_every_kind_of_the_model_has_a_handler_and_no_handler_names_an_unknown_kind() -> None:
    assert set(HANDLERS) == set(KINDS)
    for kind, handler in HANDLERS.items():
        if handler.used_by is not None:
            assert handler.used_by[0] in KINDS, kind


def test_the_kinds_that_own_rows_elsewhere_remove_them_when_deleted() -> None:
    owners = {kind for kind, handler in HANDLERS.items() if handler.deleting is not None}
    assert owners == {"Organization", "Project", "Component", "Environment", "DataPlane"}
