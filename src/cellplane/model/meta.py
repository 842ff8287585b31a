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


# Bytes (UTF-8) of a labels or of an annotations map, keys and values together: Kubernetes' limit on annotations.
# (Kubernetes bounds labels only by its object size; here they get the same bound.)
MAX_METADATA_BYTES = 256 * 1024
_NAMED = 10  # bad labels an error names one by one; the rest are counted
_SHOWN = 80  # characters of a key or value an error quotes


def _quoted(text: str) -> str:
    """``text`` quoted for a message; a long one is cut (an error names a key, not kilobytes of it)."""
    return f"'{text}'" if len(text) <= _SHOWN else f"'{text[:_SHOWN]}'... ({len(text)} characters)"


def _check_size(value: dict[str, str], what: str) -> None:
    size = sum(len(k.encode("utf-8", "surrogatepass")) + len(v.encode("utf-8", "surrogatepass"))
               for k, v in value.items())
    if size > MAX_METADATA_BYTES:
        raise ValueError(f"{what} take {size} bytes (keys and values, UTF-8); at most {MAX_METADATA_BYTES} "
                         f"(256 KiB) in total")


def _label_key_problem(key: str) -> str | None:
    """Why ``key`` is not a Kubernetes label key (``[prefix/]name``: a name of at most 63 letters, digits, '-', '_'
    and '.', starting and ending with a letter or digit; a prefix that is a DNS subdomain of at most 253)."""
    prefix, _, name = key.rpartition("/")
    if not LABEL_KEY.fullmatch(key) or len(name) > 63 or len(prefix) > 253:
        return (f"label key {_quoted(key)} is not valid: use [prefix/]name, a name of at most 63 letters, digits, "
                "'-', '_', '.' and an optional prefix (a DNS subdomain of at most 253)")
    return None


def _check_labels(value: dict[str, str]) -> dict[str, str]:
    _check_size(value, "labels")
    problems = []  # every bad label at once
    for key, val in value.items():
        if problem := _label_key_problem(key):
            problems.append(problem)
        if len(val) > 63 or not LABEL_VALUE.fullmatch(val):
            problems.append(f"label value {_quoted(val)} for {_quoted(key)} is not valid "
                            "(at most 63 letters, digits, '-', '_', '.')")
    if len(problems) > _NAMED:
        problems[_NAMED:] = [f"and {len(problems) - _NAMED} more"]
    if problems:
        raise ValueError("; ".join(problems))
    return value


def _check_annotations(value: dict[str, str]) -> dict[str, str]:
    _check_size(value, "annotations")
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
# A label key as _label_key_problem checks it, lengths included: a prefix of at most 253, a name of at most 63.
LABEL_KEY_SCHEMA_PATTERN = r"^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
LABELS_SCHEMA: dict[str, Any] = {
    "type": "object", "propertyNames": {"type": "string", "maxLength": 317, "pattern": LABEL_KEY_SCHEMA_PATTERN},
    "additionalProperties": {"type": "string", "maxLength": 63, "pattern": LABEL_VALUE.pattern}}
Labels = Annotated[dict[str, str], AfterValidator(_check_labels), WithJsonSchema(LABELS_SCHEMA)]
# Free text, as many keys as one likes, within MAX_METADATA_BYTES.
Annotations = Annotated[dict[str, str], AfterValidator(_check_annotations)]


class Strict(BaseModel):
    """Base of every spec model: unknown keys are errors, so typos never pass silently."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Metadata(Strict):
    name: Name
    organization: Name | None = Field(default=None, description="Owning organization (defaults to the caller's)")
    project: Name | None = Field(default=None, description="Owning project, for project-scoped kinds")
    labels: Labels = Field(default_factory=dict)
    annotations: Annotations = Field(default_factory=dict)
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
