"""Rows scoped by organization, project, component and environment columns: deleting what a deletion owns."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete
from sqlalchemy.orm import Session


def delete_scoped(s: Session, tables: tuple[Any, ...], organization: str, project: str | None = None,
                  component: str | None = None, environment: str | None = None) -> None:
    """Delete the rows of ``tables`` in that scope (a None part matches everything)."""
    for table in tables:
        where = [table.organization == organization]
        for column, value in (("project", project), ("component", component), ("environment", environment)):
            if value is not None:
                where.append(getattr(table, column) == value)
        s.execute(delete(table).where(*where))
