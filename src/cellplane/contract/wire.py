"""The building blocks of the contract's models: their two bases, and the field types that say what a value looks
like on the wire.

* ``Served`` is the base of what the control plane serves an agent (the desired state): frozen, and keys it does
  not declare pass through (a newer control plane may send more; the schema allows them).
* ``Report`` is the base of what an agent sends: held to JSON's types as its schema states them (strict: a number
  is not text, a flag is not 0 or 1; ``5.0`` is the integer 5), and keys it does not declare are ignored (a newer
  agent may send more). Long texts are cut rather than refused (``cut``), so that one long line never costs a batch.

A key that is left out (rather than sent as null) when it does not apply is declared ``Absent[T] = absent()``: None
in Python, optional and not nullable in the schema. Cost: none beyond pydantic's validation.

The times of what an agent sends are a type parameter (``When``) of the models that carry them: the control plane
reads them as datetimes (``Recorded``, ``Timestamp``: in UTC, never far ahead), the agent writes them as
``InstantText``, ISO 8601 text kept as written, so that the JSON it sends is the text it made.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    WithJsonSchema,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from cellplane.model.meta import DNS_LABEL, NAME_SCHEMA

T = TypeVar("T")
When = TypeVar("When")  # the type of a time in a report: ``Recorded``/``Timestamp`` read, ``InstantText`` written

# The largest integer every JSON reader holds exactly: the bound of counters and ids (bytes, memory, line ids)
# in requests, so that a number valid by the schema means the same wherever it is read.
JSON_SAFE_MAX = 2**53 - 1
MAX_MESSAGE = 4000  # characters of a reported message (longer ones are cut)
MAX_LOG_LINE = 8192  # characters of a log line (longer ones are cut)
CLOCK_SKEW = timedelta(hours=1)  # how far in the future a data plane may date its telemetry


class _NeverNull:
    """The schema of ``T | None`` as that of ``T``: the key is left out rather than sent as null."""

    def __get_pydantic_json_schema__(self, core: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        schema = handler(core)
        branches = [s for s in schema.get("anyOf", []) if s != {"type": "null"}]
        if len(branches) == 1:
            del schema["anyOf"]
            schema.update(branches[0])
        return schema


Absent = Annotated[T | None, _NeverNull()]


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


def absent(description: str | None = None) -> Any:
    """A key that is left out when it does not apply (never sent as null)."""
    return Field(default=None, description=description, json_schema_extra=_no_default)


def name_keys(schema: dict[str, Any]) -> None:
    """An object keyed by names (``dict[Name, X]``): its keys documented as ``propertyNames`` (pydantic writes a
    key pattern as ``patternProperties``, which leaves other keys allowed)."""
    values = schema.pop("patternProperties", {}).get(DNS_LABEL.pattern)
    schema["propertyNames"] = NAME_SCHEMA
    if values is not None:
        schema["additionalProperties"] = values


def integral_numbers(data: Any) -> Any:
    """A JSON object's numbers without a fraction (``5.0``) as integers, in its values and lists of values.

    JSON has one number type and JSON Schema's ``integer`` is any number without a fraction; a strict model's
    ``int`` takes only an integer. One level deep: a nested model converts its own object.
    """
    if not isinstance(data, dict):
        return data
    return {key: [_integral(v) for v in value] if isinstance(value, list) else _integral(value)
            for key, value in data.items()}


def _integral(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


class Served(BaseModel):
    """Base of what the control plane serves an agent: frozen; keys it does not declare pass through."""

    model_config = ConfigDict(extra="allow", frozen=True)


class JsonBody(BaseModel):
    """A request body held to JSON's types, as its schema states them: strict (a number is not text, a flag is not
    0 or 1), with ``5.0`` for the integer 5. Timestamps take text (see ``Recorded``)."""

    model_config = ConfigDict(strict=True)

    @model_validator(mode="before")
    @classmethod
    def _integral_numbers(cls, data: Any) -> Any:
        return integral_numbers(data)


class Report(JsonBody):
    """Base of what an agent sends: a JSON body whose unknown keys are ignored (a newer agent may send more)."""

    model_config = ConfigDict(extra="ignore")


def cut(limit: int) -> AfterValidator:
    """Text cut to ``limit`` characters (rather than refused)."""
    return AfterValidator(lambda value: value[:limit])


def _timestamp_text(value: Any) -> Any:
    """A timestamp is ISO 8601 text in JSON (a number would be read as seconds since the epoch)."""
    if not isinstance(value, str | datetime):
        raise ValueError("an ISO 8601 timestamp (text)")
    return value


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("out of range") from None


def _not_ahead(value: datetime) -> datetime:
    if value > datetime.now(UTC) + CLOCK_SKEW:
        raise ValueError("more than an hour in the future (is the data plane's clock right?)")
    return value


def _instant(value: str) -> str:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError("an ISO 8601 timestamp") from None
    if parsed.tzinfo is None:
        raise ValueError("an ISO 8601 timestamp with its offset from UTC")
    return value


# An ISO 8601 text the control plane sends (a time it recorded).
TimeText = Annotated[str, WithJsonSchema({"type": "string", "format": "date-time"})]
# An ISO 8601 text an agent sends, read as a time in UTC (without an offset: UTC).
Timestamp = Annotated[datetime, BeforeValidator(_timestamp_text), Field(strict=False), AfterValidator(_utc)]
# When telemetry happened: never far in the future, or retention (by age) would keep it forever.
Recorded = Annotated[datetime, BeforeValidator(_timestamp_text), Field(strict=False), AfterValidator(_utc),
                     AfterValidator(_not_ahead)]
# An ISO 8601 instant (with its offset) as an agent writes it, kept as that text: a datetime would be written back
# otherwise ("Z" for "+00:00", no fraction for ".000000"). Checked to parse (``datetime.fromisoformat``, 0.3 µs).
InstantText = Annotated[str, AfterValidator(_instant), WithJsonSchema({"type": "string", "format": "date-time"})]
Message = Annotated[str, cut(MAX_MESSAGE)]
Label = Annotated[str, Field(min_length=1, max_length=63, pattern=DNS_LABEL.pattern)]
Url = Annotated[str, Field(min_length=8, max_length=2000, pattern=r"^https?://[^\s]+$")]

ReportedState = Literal["pending", "progressing", "ready", "degraded", "crash-loop", "failed", "blocked", "scheduled",
                        "idle", "scaled-to-zero"]
ConnectionVia = Literal["cell", "internal", "external", "url"]
RunState = Literal["queued", "running", "succeeded", "failed"]
LogStream = Literal["stdout", "stderr", "system"]

