"""The OpenAPI document a live control plane serves at ``/openapi.json``: every reference resolves, and the
rules it states are the server's own."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from cellplane.model import KINDS, dns_label_problem
from cellplane.model.meta import DNS_LABEL
from liveserver import LiveServer


@pytest.fixture(scope="module")
def document(live_server: LiveServer) -> dict[str, Any]:
    r = httpx.get(live_server.url + "/openapi.json", timeout=30)
    assert r.status_code == 200
    return r.json()


def _refs(value: Any, where: str = "#") -> Iterator[tuple[str, str]]:
    """(where, reference) for every ``$ref`` in ``value``, however deep."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "$ref" and isinstance(item, str):
                yield where, item
            else:
                yield from _refs(item, f"{where}/{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _refs(item, f"{where}/{i}")


def _resolve(document: dict[str, Any], ref: str) -> Any:
    """The value a local JSON pointer (``#/components/schemas/X``) names; KeyError when there is none."""
    assert ref.startswith("#/"), f"not a local reference: {ref}"
    value: Any = document
    for part in ref[2:].split("/"):
        value = value[part.replace("~1", "/").replace("~0", "~")]
    return value


def test_every_reference_in_the_document_resolves(document: dict[str, Any]) -> None:
    refs = list(_refs(document))
    assert len(refs) > 100  # the walk reaches into paths and components
    dangling = []
    for where, ref in refs:
        try:
            _resolve(document, ref)
        except (KeyError, IndexError, TypeError):
            dangling.append(f"{where} -> {ref}")
    assert dangling == []


def test_a_build_request_body_is_documented_with_its_fields(document: dict[str, Any]) -> None:
    path = "/api/v1/organizations/{org}/projects/{project}/components/{component}/builds"
    schema = document["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
    schema = _resolve(document, schema["$ref"]) if "$ref" in schema else schema
    assert set(schema["properties"]) == {"track", "ref"}
    assert schema["additionalProperties"] is False


NAMES = ["a", "0", "a-b", "web-1", "a" * 63, "a" * 64, "", "-a", "a-", "A", "a_b", "a.b", "é", "a b", "1-2-3"]


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_documents_name_rule_in_the_schema_is_the_servers(document: dict[str, Any], kind: str) -> None:
    body = document["components"]["schemas"][f"{kind}Body"]
    metadata = _resolve(document, body["properties"]["metadata"]["$ref"])
    name = metadata["properties"]["name"]
    assert name["pattern"] == DNS_LABEL.pattern
    for sample in NAMES:
        by_schema = name["minLength"] <= len(sample) <= name["maxLength"] and re.search(name["pattern"], sample)
        assert bool(by_schema) == (dns_label_problem(sample) is None), sample


def test_names_in_request_bodies_carry_the_name_rule(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    for model, field in [("NewUser", "name"), ("NewToken", "name"), ("ComponentImport", "name"),
                         ("AlertRuleRequest", "environment")]:
        rule = schemas[model]["properties"][field]
        assert rule.get("pattern") == DNS_LABEL.pattern, (model, field, rule)
        assert (rule.get("minLength"), rule.get("maxLength")) == (1, 63), (model, field, rule)


@pytest.mark.parametrize(("path", "method", "name"), [
    ("/api/v1/organizations/{org}/projects/{project}/components/{component}/logs", "get", "environment"),
    ("/api/v1/organizations/{org}/projects/{project}/components/{component}/metrics", "get", "environment"),
    ("/api/v1/organizations/{org}/projects/{project}/graph", "get", "environment"),
    ("/api/v1/organizations/{org}/projects/{project}/previews", "delete", "branch"),
])
def test_query_parameters_a_route_requires_are_required_in_the_document(document: dict[str, Any], path: str,
                                                                         method: str, name: str) -> None:
    [parameter] = [p for p in document["paths"][path][method]["parameters"] if p["name"] == name]
    assert parameter["required"] is True
    assert "x-cellplane-required" not in str(document)
