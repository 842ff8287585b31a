"""Bounded, reproducible fuzzing of the control plane's OpenAPI document with schemathesis.

The app runs in this process (schemathesis's ASGI transport; ``inprocess``): the same routes, middleware, store and
error handlers as a served control plane, without the sockets, which cost about a third of the run. What the server
itself adds (uvicorn, the build workers, the telemetry loop) is proven by the tests that start one.

Every operation in ``/openapi.json`` is called with generated requests (the examples, coverage and
fuzzing phases; valid and invalid data), as the admin, and every response is checked:

* ``not_a_server_error``: no input may produce a 5xx;
* ``status_code_conformance``, ``content_type_conformance``, ``response_schema_conformance``: every
  success response is checked against its published schema (resource documents per kind, lists, apply
  results, users, tokens, ...; documents are sent as stored, not through a response model, so this is
  what keeps their schemas honest), and every refusal against the one error shape the API documents
  as ``4XX``: ``{"error": {"code", "message", "details": [...]}}``;
* ``negative_data_rejection``: invalid data (wrong types, out-of-range numbers, over-long names) is a 4xx;
* ``unsupported_method``, ``allow_header_conformance``: other methods get a 405 naming the right ones;
* ``ignored_auth``: the operations declare bearer auth, and answer 401 without, or with a bad, token;
* ``missing_required_header``, ``use_after_free``, ``ensure_resource_availability``,
  ``object_level_authorization`` run too but find nothing to do here (no required headers, no
  OpenAPI links, a single identity);
* ``positive_data_acceptance``: every request valid by the schema is accepted (2xx), or refused as missing,
  conflicting or forbidden (404, 409, 403), or with 422 only where a rule no JSON schema states applies
  (``UNSTATED``: names matching the path, a spec's cross-field rules, references that must resolve, ranges
  relative to now, an archive's bytes). ``_refused_for_unstated_rules_only`` checks that every problem of such a
  422 is one of those listed for its operation, so a rule missing from the schema fails the run.

What the generator is told beyond the schema: no NUL characters (``allow_x00``; the API refuses them in any
text, see ``TextGuard``), a ``continue`` token the server issued in positive cases (the schema can only say
"text"), and never ``follow`` (a followed stream lasts until the client leaves).

The run is bounded (``MAX_EXAMPLES`` per operation in the fuzzing phase; the coverage phase, which
enumerates every property of a body schema, skips ``/apply``, see ``api_schema``) and reproducible (a fixed
seed, no example database). Half of the generated path parameters are replaced by the names of resources
created up front, so that fuzzed bodies and queries also reach real organizations, projects and
components rather than stopping at a 404. It runs on SQLite and, marked ``postgres``, on PostgreSQL,
which refuses things SQLite silently accepts (strings longer than their column).
"""

from __future__ import annotations

import asyncio
import re
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from pydantic import ValidationError
from schemathesis.config._checks import POSITIVE_DATA_ACCEPTANCE_EXPECTED_STATUSES
from schemathesis.core.parameters import ParameterLocation
from schemathesis.specs.openapi import checks as oas
from starlette.types import ASGIApp

from cellplane.controlplane.api.app import create_app
from cellplane.model import BY_PLURAL, KINDS
from inprocess import AppClient, without_lifespan
from liveserver import doc

MAX_EXAMPLES = 15
SEED = 20240601
KNOWN = "fz"  # the name of every seeded resource, see ``_seed``
KNOWN_KEY = "FZ_VALUE"
NAME_PARAMS = ("org", "project", "component", "name", "user")
TRUE = ("true", "1", "t", "y", "yes", "on")  # what the server reads as true in a query
# Rules the server enforces that no JSON schema states. A request valid by the schema may still break one, and
# is then refused with 422 naming the field; ``positive_data_acceptance`` takes 422 from these operations only,
# and ``_refused_for_unstated_rules_only`` fails any such 422 whose problems are not all listed for its operation.
# Operation (a regex on its label) -> (field, problem) regexes.
# A spec's cron expressions and time zones (single values no pattern states), and the resources it names, which
# must exist. Its cross-field rules (``problems()`` of the kinds' spec models) are ``CROSS_FIELD``: a problem the
# spec's structural validation (every single-value rule) does not find. (``(?s)``: a value may hold a newline.)
SPEC_RULES = r"(?s)^'.*' is not a valid cron|^'.*' is not a known time zone|does not exist"
CROSS_FIELD = "<cross-field>"
UNSTATED: dict[str, list[tuple[str, str]]] = {
    # a document's name and owners must match the path it is sent to (PUT .../{name}, POST under an owner)
    # and a document names its owners, or the request does (/apply's organization and project)
    r"^(POST|PUT) /api/v1/(organizations|apply$)": [
        (r"^documents\[\d+\]\.metadata\.(organization|project)$", r"^required"),
        (r"^metadata\.(name|organization|project)$", r"^must match"),
        (r"^(documents\[\d+\]\.)?spec(\.|$)", SPEC_RULES), (r"^(documents\[\d+\]\.)?spec(\.|$)", CROSS_FIELD)],
    # an import's source must be a directory or repository the control plane reads, its descriptors valid YAML
    # that maps onto a spec
    r"^POST .*/component-imports$": [(r"^source\.repository$", r""), (r"^\.choreo/", r""),
                                     (r"^spec(\.|$)", SPEC_RULES), (r"^spec(\.|$)", CROSS_FIELD)],
    # a component needs a repository to build from (in its stored spec); an upload must be a safe .tar.gz;
    # and a ref must be one git would take (no leading '-', no '..', no whitespace or control characters)
    r"^POST .*/builds$": [(r"^source\.repository$", r"^required"), (r"^archive$", r""),
                          (r"^ref$", r"^not a branch, tag or commit$")],
    # only task components run; a promotion follows the project's pipeline
    r"^POST .*/runs$": [(r"^component$", r"not a task$")],
    r"^POST .*/promotions$": [(r"^(from|to)$", r"promotion path")],
    # the environment named in the query must exist; a range starts at most 90 days ago, and not in the future
    r"^GET .*/components/\{component\}/(logs|access-logs|metrics|traces)$|^GET .*/graph$": [
        (r"^environment$", r"^no such environment$"), (r"^since$", r"^(too far back|out of range|in the future)$")],
    # a duration's range (10s..1d for a window)
    r"^GET .*/graph$": [(r"^window$", r"^out of range$")],
    r"^POST .*/alerts$": [(r"^(window|for)$", r"^out of range$")],
    # an identity provider's group mappings name a project or an environment of the organization, which must exist
    r"^PUT .*/identity-providers/\{name\}$": [(r"^groupRoles\[\d+\]\.(project|environment)$", r"not found")],
    # a component's scaling in an environment: the spec it makes passes the spec's cross-field rules (minReplicas 0
    # only on what the gateway can wake, minReplicas at most maxReplicas after merging)
    r"^PATCH .*/scaling/\{environment\}$": [(r"^spec\.scaling\.", CROSS_FIELD)],
    # what a data plane reports happened at most an hour ahead of the control plane's clock
    r"^POST .*/dataplanes/\{name\}/": [(r"\.(at|start|startedAt|endedAt)$", r"in the future")],
}


@schemathesis.serializer("application/gzip")
def _gzip(ctx: Any, value: Any) -> bytes:
    """Build uploads (a .tar.gz body): generated bytes or text, gzip'd or raw, exercise the archive checks."""
    import gzip

    data = value if isinstance(value, bytes) else str(value).encode("utf-8", "surrogatepass")
    return gzip.compress(data) if len(data) % 2 else data


def _unstated_rules(label: str) -> list[tuple[str, str]]:
    return [rule for operation, rules in UNSTATED.items() if re.search(operation, label) for rule in rules]


@schemathesis.check
def _refused_for_unstated_rules_only(ctx: Any, response: Any, case: schemathesis.Case) -> bool | None:
    """A schema-valid request refused with 422 broke only rules of ``UNSTATED`` (never one the schema should say)."""
    if case.meta is None or not case.meta.generation.mode.is_positive or response.status_code != 422:
        return None
    if oas.is_unexpected_http_status_case(case):  # a coverage probe of the request's shape, not of its data
        return None
    rules = _unstated_rules(case.operation.label)
    details = response.json()["error"]["details"]
    unstated = [d for d in details if not any(re.search(field, d["field"]) and _explains(problem, d, case)
                                              for field, problem in rules)]
    if unstated or not details:
        raise AssertionError(f"a schema-valid request was refused for a rule its schema does not state: {details}")
    return None


def _explains(problem: str, detail: dict[str, str], case: schemathesis.Case) -> bool:
    if problem != CROSS_FIELD:
        return re.search(problem, detail["problem"]) is not None
    # The spec the problem is in passes the kind's structural validation: the problem is a cross-field rule.
    body = case.body if isinstance(case.body, dict) else {}
    index = re.match(r"^documents\[(\d+)\]", detail["field"])
    document = body["documents"][int(index.group(1))] if index else body
    path = case.operation.path
    path = path.removesuffix("/component-imports") + "/components" if path.endswith("/component-imports") else path
    kind = document.get("kind") or next(BY_PLURAL[part].kind for part in reversed(path.split("/")) if part in BY_PLURAL)
    try:
        KINDS[kind].spec.model_validate(document.get("spec") or {})
    except ValidationError as e:
        # A cron expression or time zone (``SPEC_RULES``) is checked by a validator of the structure, and the server
        # reports every problem at once: a spec whose only structural problems are those is structurally valid here.
        return all(re.search(SPEC_RULES, str(error.get("ctx", {}).get("error", error["msg"]))) for error in e.errors())
    return True


def _seed(admin: AppClient) -> str:
    """Resources named ``fz`` of every kind, a configuration value, a secret, a user with a role; a continue token
    the server issued."""
    docs = [
        doc("Organization", KNOWN),
        doc("DataPlane", KNOWN, organization=KNOWN),
        doc("Environment", KNOWN, {"dataPlane": KNOWN}, organization=KNOWN),
        doc("DeploymentPipeline", KNOWN, {"promotionPaths": [{"source": "development", "targets": [{"name": KNOWN}]}]},
            organization=KNOWN),
        doc("Project", KNOWN, {"deploymentPipeline": KNOWN}, organization=KNOWN),
        doc("Component", KNOWN, {"configuration": {"env": [
            {"name": "PLAIN", "value": "p", "environments": {KNOWN: "in-fz"}},
            {"name": "TOKEN", "value": "fuzz-secret", "secret": True},
        ]}}, organization=KNOWN, project=KNOWN),
    ]
    r = admin.post("/apply", json={"documents": docs})
    assert r.status_code == 200, r.text
    base = f"/organizations/{KNOWN}/projects/{KNOWN}/components/{KNOWN}/config/{KNOWN_KEY}"
    assert admin.put(base, json={"value": "v", "secret": True}).status_code == 200
    assert admin.post("/users", json={"name": KNOWN}).status_code == 201
    r = admin.post(f"/organizations/{KNOWN}/rolebindings", json={"user": KNOWN, "role": "developer", "project": KNOWN})
    assert r.status_code == 201, r.text
    token = admin.get("/organizations", params={"limit": 1}).json()["metadata"]["continue"]
    assert token
    return token


@dataclass
class Fuzzed:
    """The control plane's app in this process, seeded, with the admin's token and a continue token it issued."""

    app: ASGIApp
    admin_token: str
    continue_token: str


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def fuzzed_app(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzed]:
    data = Path(tmp_path_factory.mktemp("fuzzed")) / "data"
    url = None
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres_server").create_database(f"fuzz_{uuid.uuid4().hex[:12]}")
    app = create_app(data, url)
    token = (data / "admin.token").read_text().strip()
    runner = asyncio.Runner()
    try:
        yield Fuzzed(without_lifespan(app), token, _seed(AppClient(app, runner, token)))
    finally:
        runner.close()
        app.state.platform.close()


@pytest.fixture(scope="module")
def api_schema(fuzzed_app: Fuzzed) -> schemathesis.BaseSchema:
    accepted = [*POSITIVE_DATA_ACCEPTANCE_EXPECTED_STATUSES, "422"]
    config = schemathesis.Config.from_dict({"seed": SEED, "operations": [
        *({"include-name-regex": operation, "checks": {"positive_data_acceptance": {"expected-statuses": accepted}}}
          for operation in UNSTATED),
        # The coverage phase enumerates every property of a body schema; /apply's documents are the six kinds'
        # documents, each already enumerated through its own POST and PUT routes (same parser, same specs).
        # Enumerating them a seventh time would double the run; /apply is still fuzzed, valid and invalid.
        {"include-path": "/api/v1/apply", "phases": {"coverage": {"enabled": False}}},
    ]})
    schema = schemathesis.openapi.from_asgi("/openapi.json", fuzzed_app.app, config=config)
    schema.config.update(request_timeout=30, headers={"Authorization": f"Bearer {fuzzed_app.admin_token}"})
    schema.config.generation.update(max_examples=MAX_EXAMPLES, database="none", allow_x00=False)
    # allow_x00: no request may carry a NUL character, anywhere (TextGuard refuses them with 422; a schema would have
    # to say it of every string). Unpaired surrogates are refused the same way; the utf-8 codec never makes them.
    issued = fuzzed_app.continue_token

    @schema.hook
    def map_case(ctx: Any, case: schemathesis.Case) -> schemathesis.Case:
        query_info = case.meta.components.get(ParameterLocation.QUERY) if case.meta else None
        positive_query = query_info is not None and query_info.mode.is_positive
        if case.query and positive_query and "continue" in case.query:
            case.query["continue"] = issued  # a token must be one the server issued: the schema says only "text"
        if case.query and str(case.query.get("follow")).lower() in TRUE:
            case.query["follow"] = False  # a followed stream lasts until the client leaves

        params = case.path_parameters
        path_info = case.meta.components.get(ParameterLocation.PATH) if case.meta else None
        # Only valid path parameters are swapped: an invalid one must stay invalid. Deletions keep their
        # random names (deleting the seeded project early would turn the rest of the run into 404s).
        if not params or path_info is None or not path_info.mode.is_positive:
            return case
        if case.method.upper() == "DELETE" and "key" not in params:
            return case
        if zlib.crc32(repr(sorted(params.items())).encode()) % 2:  # half of them, deterministically
            for k in params:
                if k in NAME_PARAMS:
                    params[k] = KNOWN
                elif k == "key":
                    params[k] = KNOWN_KEY
        return case

    return schema


@pytest.fixture(autouse=True)
def _pytest9_nodeid(request: pytest.FixtureRequest) -> None:
    """schemathesis 4.32's lazy loader reads and rewrites ``node._nodeid``, which pytest 9 no longer has."""
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
def test_openapi_operations(case: schemathesis.Case) -> None:
    case.call_and_validate(additional_checks=[_refused_for_unstated_rules_only])
