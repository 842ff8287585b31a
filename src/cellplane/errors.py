"""Errors are values: a code, a message and the offending field paths.

The API turns them into ``{"error": {"code", "message", "details": [{"field", "problem"}]}}``
and the CLI prints them on one line. Nothing else in the code base decides an error's shape.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class FieldProblem:
    field: str
    problem: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "problem": self.problem}


@dataclass
class CellplaneError(Exception):
    """Base error. ``status`` is the HTTP status the API answers with."""

    message: str
    details: list[FieldProblem] = field(default_factory=list)
    code: str = "error"
    status: int = 400

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def as_dict(self) -> dict:
        return {
            "error": {
                "code": self.code,
                "message": self.message,
                "details": [d.as_dict() for d in self.details],
            }
        }

    def prefixed(self, prefix: str) -> CellplaneError:
        """The same error with every field path placed under ``prefix``."""
        details = [FieldProblem(join_path(prefix, d.field), d.problem) for d in self.details]
        return type(self)(self.message, details, self.code, self.status)


class InvalidError(CellplaneError):
    def __init__(self, message: str, details: list[FieldProblem] | None = None, code: str = "invalid",
                 status: int = 422) -> None:
        super().__init__(message, details or [], code, status)


class NotFoundError(CellplaneError):
    def __init__(self, message: str, details: list[FieldProblem] | None = None, code: str = "not-found",
                 status: int = 404) -> None:
        super().__init__(message, details or [], code, status)


class ConflictError(CellplaneError):
    def __init__(self, message: str, details: list[FieldProblem] | None = None, code: str = "conflict",
                 status: int = 409) -> None:
        super().__init__(message, details or [], code, status)


class UnauthorizedError(CellplaneError):
    def __init__(self, message: str = "a valid API token is required (Authorization: Bearer <token>)",
                 details: list[FieldProblem] | None = None, code: str = "unauthorized",
                 status: int = 401) -> None:
        super().__init__(message, details or [], code, status)


class ForbiddenError(CellplaneError):
    def __init__(self, message: str, details: list[FieldProblem] | None = None, code: str = "forbidden",
                 status: int = 403) -> None:
        super().__init__(message, details or [], code, status)


def join_path(prefix: str, path: str) -> str:
    if not prefix:
        return path
    if not path:
        return prefix
    if path.startswith("["):
        return prefix + path
    return f"{prefix}.{path}"


def loc_to_path(loc: tuple | list) -> str:
    """Render a pydantic error location as ``spec.endpoints[0].port``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out = join_path(out, str(part))
    return out
