"""Names, metadata and the document envelope shared by every kind."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

# Patterns use "$" so that JSON schemas can reuse them; always test with fullmatch ("$" alone accepts a trailing "\n").
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
LABEL_KEY = re.compile(r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")


def dns_label_problem(value: str) -> str | None:
    """Why ``value`` is not a DNS-1123 label, or None when it is one."""
    if not value:
        return "must not be empty"
    if len(value) > 63:
        return f"must be at most 63 characters (got {len(value)})"
    if not DNS_LABEL.fullmatch(value):
        return (
            f"'{value}' is not a valid name: use lower-case letters, digits and '-', "
            "starting and ending with a letter or digit (DNS-1123 label)"
        )
    return None


def _check_dns_label(value: str) -> str:
    problem = dns_label_problem(value)
    if problem:
        raise ValueError(problem)
    return value


def _check_labels(value: dict[str, str]) -> dict[str, str]:
    problems = []  # every bad label at once
    for key, val in value.items():
        if len(key) > 253 or not LABEL_KEY.fullmatch(key):
            problems.append(f"label key '{key}' is not valid: use [prefix/]name with letters, digits, '-', '_', '.'")
        if len(val) > 63 or not LABEL_VALUE.fullmatch(val):
            problems.append(f"label value '{val}' for '{key}' is not valid (at most 63 letters, digits, '-', '_', '.')")
    if problems:
        raise ValueError("; ".join(problems))
    return value


# The JSON schema of a name states the rule ``dns_label_problem`` checks (the OpenAPI document shows it, and
# clients can check before sending); validation stays the validator's, so its messages are the API's.
NAME_SCHEMA: dict[str, Any] = {"type": "string", "minLength": 1, "maxLength": 63, "pattern": DNS_LABEL.pattern}
Name = Annotated[str, AfterValidator(_check_dns_label), WithJsonSchema(NAME_SCHEMA)]


def _json_timestamp(value: Any) -> Any:
    if value is None or isinstance(value, str | datetime):
        return value
    raise ValueError("an ISO 8601 timestamp (text), as the server writes it")


def _json_integer(value: Any) -> Any:
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise ValueError("an integer")


# Server-owned values are ignored on input, but must still be what the schema says (not 0 for a time, "1" for 1).
ServerTimestamp = Annotated[datetime | None, BeforeValidator(_json_timestamp)]
ServerInteger = Annotated[int | None, BeforeValidator(_json_integer)]
LABELS_SCHEMA: dict[str, Any] = {
    "type": "object", "propertyNames": {"type": "string", "maxLength": 253, "pattern": LABEL_KEY.pattern},
    "additionalProperties": {"type": "string", "maxLength": 63, "pattern": LABEL_VALUE.pattern}}
Labels = Annotated[dict[str, str], AfterValidator(_check_labels), WithJsonSchema(LABELS_SCHEMA)]


class Strict(BaseModel):
    """Base of every spec model: unknown keys are errors, so typos never pass silently."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Metadata(Strict):
    name: Name
    organization: Name | None = Field(default=None, description="Owning organization (defaults to the caller's)")
    project: Name | None = Field(default=None, description="Owning project, for project-scoped kinds")
    labels: Labels = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    # Server-owned; accepted on input so that `get -o yaml` output can be applied again, then ignored.
    uid: str | None = None
    generation: ServerInteger = None
    creationTimestamp: ServerTimestamp = None
    updateTimestamp: ServerTimestamp = None


def drop_none(data: Any) -> Any:
    """Recursively remove None values, for compact documents."""
    if isinstance(data, dict):
        return {k: drop_none(v) for k, v in data.items() if v is not None}
    if isinstance(data, list):
        return [drop_none(v) for v in data]
    return data
