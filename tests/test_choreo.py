"""Choreo descriptors (``.choreo/*.yaml``) mapped onto a Cellplane Component spec.

Fixtures live in ``tests/fixtures/choreo/<case>/.choreo/`` (see the README there); every valid one
must give a spec that ``validate_spec`` accepts as it is.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cellplane.choreo import (
    DESCRIPTOR_FILES,
    ChoreoImport,
    import_choreo,
    import_directory,
    read_descriptor_files,
)
from cellplane.choreo.refs import parse_resource_ref, parse_service_reference
from cellplane.choreo.walker import dns_label
from cellplane.errors import InvalidError
from cellplane.model import validate_spec
from treefiles import write

FIXTURES = Path(__file__).parent / "fixtures" / "choreo"
VALID = ["schema-1.0", "schema-1.1", "schema-1.2", "single-visibility", "proxy", "component-config-only",
         "endpoints-only", "all-three", "unknown-keys"]
INVALID = ["invalid-yaml", "invalid-port"]
CY, CC, EY = DESCRIPTOR_FILES


def load(case: str) -> ChoreoImport:
    return import_directory(FIXTURES / case)


def component(text: str) -> ChoreoImport:
    return import_choreo({CY: text})


def invalid(files: dict[str, str]) -> dict[str, str]:
    """The problems of the InvalidError that ``files`` must raise, as {field: problem}."""
    with pytest.raises(InvalidError) as info:
        import_choreo(files)
    return {p.field: p.problem for p in info.value.details}


def assert_valid(spec: dict) -> None:
    parsed, problems = validate_spec("Component", spec)
    assert problems == [], problems
    assert parsed is not None
    assert json.loads(json.dumps(spec)) == spec  # JSON-ready


# --- every fixture ---------------------------------------------------------------------------


def test_every_fixture_is_listed_in_the_readme() -> None:
    cases = sorted(p.name for p in FIXTURES.iterdir() if p.is_dir())
    assert cases == sorted(VALID + INVALID)
    readme = (FIXTURES / "README.md").read_text()
    for case in cases:
        assert f"`{case}`" in readme


@pytest.mark.parametrize("case", VALID)
def test_valid_fixture_gives_a_valid_spec(case: str) -> None:
    result = load(case)
    assert result.descriptor in DESCRIPTOR_FILES
    assert_valid(result.spec)
    for warning in result.warnings:
        assert warning.split(": ", 1)[0] in DESCRIPTOR_FILES, warning


@pytest.mark.parametrize("case", INVALID)
def test_invalid_fixture_raises_invalid_error(case: str) -> None:
    with pytest.raises(InvalidError) as info:
        load(case)
    assert info.value.details
    for problem in info.value.details:
        assert problem.field.startswith(CY)


def test_schema_1_0_service_references() -> None:
    result = load("schema-1.0")
    assert result.descriptor == CY
    assert result.warnings == []
    assert result.spec == {
        "endpoints": [{
            "name": "greeter-service", "displayName": "Greeter Service", "port": 9090, "type": "REST",
            "basePath": "/greeting-service", "visibility": ["Public", "Organization"],
            "contract": "openapi.yaml",
        }],
        "dependencies": [{
            "name": "employee-api", "component": "employee-api", "project": "hr",
            "env": [
                {"from": "ServiceURL", "to": "EMPLOYEE_API_URL"},
                {"from": "ConsumerKey", "to": "EMPLOYEE_API_CLIENT_ID"},
                {"from": "ConsumerSecret", "to": "EMPLOYEE_API_CLIENT_SECRET"},
                {"from": "TokenURL", "to": "EMPLOYEE_API_TOKEN_URL"},
            ],
        }],
        "configuration": {"env": [], "files": []},
    }


def test_schema_1_1_connection_references_and_renames() -> None:
    result = load("schema-1.1")
    assert result.warnings == []
    deps = {d["name"]: d for d in result.spec["dependencies"]}
    # Same project (no project segment), Project visibility: only the service URL, renamed.
    assert deps["inventory-conn"] == {"name": "inventory-conn", "component": "inventory",
                                      "env": [{"from": "ServiceURL", "to": "INVENTORY_URL"}]}
    # Another project, through the gateway: ChoreoAPIKey becomes APIKey; Choreo's default names stay.
    billing = deps["billing"]
    assert (billing["component"], billing["project"]) == ("billing-api", "finance")
    assert {"from": "APIKey", "to": "BILLING_API_KEY"} in billing["env"]
    assert {"from": "ServiceURL", "to": "CHOREO_BILLING_SERVICEURL"} in billing["env"]
    assert {"from": "ConsumerSecret", "to": "CHOREO_BILLING_CONSUMERSECRET"} in billing["env"]
    assert deps["tracker"] == {"name": "tracker", "component": "tracker", "project": "shipping",
                               "env": [{"from": "ServiceURL", "to": "TRACKER_URL"}]}
    assert result.spec["endpoints"][0]["type"] == "GraphQL"


def test_schema_1_2_configuration_form() -> None:
    result = load("schema-1.2")
    spec = result.spec
    assert [e["name"] for e in spec["endpoints"]] == ["reading-list", "admin"]
    assert spec["endpoints"][0]["contract"] == "docs/openapi.yaml"
    assert spec["endpoints"][1] == {"name": "admin", "port": 9091, "type": "gRPC", "basePath": "/",
                                    "visibility": ["Project"]}
    assert spec["dependencies"][0]["env"][0] == {"from": "ServiceURL", "to": "HR_SERVICE_URL"}
    assert spec["configuration"]["env"] == [
        {"name": "DB_USER"},
        {"name": "DB_PASSWORD", "secret": True},
        {"name": "LOG_LEVEL", "value": "info"},
    ]
    assert spec["configuration"]["files"] == [
        {"name": "application-yaml", "mountPath": "/src/resources/application.yaml"}]
    [warning] = result.warnings
    assert warning.startswith(f"{CY}: configurations.file[0]: ")
    assert "keys: version, users" in warning


def test_single_network_visibility_and_name_normalisation() -> None:
    result = load("single-visibility")
    endpoints = result.spec["endpoints"]
    assert [e["name"] for e in endpoints] == ["fhir-mcp-server", "greeter-service", "events"]
    assert [e["type"] for e in endpoints] == ["REST", "gRPC", "WebSocket"]
    assert [e["visibility"] for e in endpoints] == [["Organization"], ["Project"], ["Public"]]
    assert endpoints[1]["basePath"] == "/"
    assert endpoints[0]["displayName"] == "fhir_mcp_server"
    assert f"{CY}: endpoints[0].name: 'fhir_mcp_server' is not a DNS-1123 label; using 'fhir-mcp-server'" \
        in result.warnings
    assert any(w.startswith(f"{CY}: endpoints[1].service.basePath: a gRPC endpoint") for w in result.warnings)
    assert any(w.startswith(f"{CY}: endpoints[2]: no network visibility") for w in result.warnings)


def test_proxy_becomes_api_proxy() -> None:
    result = load("proxy")
    assert result.spec["type"] == "api-proxy"
    assert result.spec["proxy"] == {
        "type": "REST", "schemaFilePath": "openapi.yaml", "docPath": "docs/README.md",
        "thumbnailPath": "images/thumbnail.png", "visibility": ["Public", "Organization"],
    }
    assert any("proxy.upstream" in w for w in result.warnings)


def test_component_config_only() -> None:
    result = load("component-config-only")
    assert result.descriptor == CC
    spec = result.spec
    assert spec["endpoints"][0] == {
        "name": "greeting-service", "displayName": "Greeting Service", "port": 9090, "type": "REST",
        "basePath": "/greeting", "visibility": ["Public"], "contract": "greeting_openapi.yaml",
    }
    assert spec["endpoints"][1]["type"] == "TCP"
    assert spec["dependencies"] == [{"name": "mmvhxd", "component": "mmvhxd", "project": "mttm",
                                     "env": [{"from": "ServiceURL", "to": "SERVICE_URL"}]}]
    # The database connection cannot be a dependency; its variables are declared for the user to fill.
    assert spec["configuration"]["env"] == [{"name": "DB_HOST"}, {"name": "DB_PASSWORD", "secret": True}]
    assert any(w.startswith(f"{CC}: spec.outbound.serviceReferences[1].name: Choreo-managed database")
               for w in result.warnings)


def test_endpoints_only_with_context() -> None:
    result = load("endpoints-only")
    assert result.descriptor == EY
    assert result.spec["endpoints"] == [
        {"name": "greeting-service", "displayName": "Greeting Service", "port": 9090, "type": "REST",
         "basePath": "/greeting", "visibility": ["Project"], "contract": "greeting_openapi.yaml"},
        {"name": "graphql", "port": 9091, "type": "GraphQL", "basePath": "/graphql",
         "visibility": ["Organization"]},
    ]
    expected = f"{EY}: endpoints[1].context: 'graphql' does not start with '/'; using '/graphql'"
    assert expected in result.warnings


def test_all_three_present_uses_component_yaml() -> None:
    result = load("all-three")
    assert result.descriptor == CY
    assert [e["name"] for e in result.spec["endpoints"]] == ["from-component-yaml"]
    assert result.warnings == [f"{CC}: ignored, {CY} takes precedence",
                               f"{EY}: ignored, {CY} takes precedence"]


def test_unknown_keys_are_warnings() -> None:
    result = load("unknown-keys")
    assert [e["name"] for e in result.spec["endpoints"]] == ["api"]
    for expected in [
        f"{CY}: owner: unknown key, ignored",
        f"{CY}: configuration: unknown key, ignored (did you mean 'configurations'?)",
        f"{CY}: endpoints[0].foo: unknown key, ignored",
        f"{CY}: endpoints[0].service.timeout: unknown key, ignored",
        f"{CY}: endpoints[0].networkVisibilites: unknown key, ignored (did you mean 'networkVisibilities'?)",
        f"{CY}: dependencies.connectionReferences[0].retries: unknown key, ignored",
    ]:
        assert expected in result.warnings


def test_invalid_yaml_names_file_and_line() -> None:
    with pytest.raises(InvalidError) as info:
        load("invalid-yaml")
    [problem] = info.value.details
    assert problem.field == f"{CY}: line 6"
    assert "not valid YAML" in info.value.message


def test_type_errors_are_collected_at_once() -> None:
    with pytest.raises(InvalidError) as info:
        load("invalid-port")
    problems = {p.field: p.problem for p in info.value.details}
    assert problems == {
        f"{CY}: endpoints[0].service.port": "'abc' is not a port number (1-65535)",
        f"{CY}: endpoints[1].service.port": "70000 is not a port number (1-65535)",
        f"{CY}: endpoints[1].type": "'pdf' is not one of REST, GraphQL, GRPC, WS, TCP, UDP",
        f"{CY}: endpoints[1].networkVisibilities[0]": "'Private' is not one of Project, Organization, Public",
        f"{CY}: dependencies": "expected a mapping, got a number",
    }
    assert info.value.status == 422


# --- precedence and the shape of the result --------------------------------------------------


def test_no_descriptor() -> None:
    assert import_choreo({}) == ChoreoImport(None, {}, [])
    assert import_directory(FIXTURES / "does-not-exist") == ChoreoImport(None, {}, [])


def test_component_config_wins_over_endpoints_yaml() -> None:
    cc = "apiVersion: core.choreo.dev/v1beta1\nkind: ComponentConfig\nspec: {inbound: []}\n"
    result = import_choreo({EY: "version: 0.1\nendpoints: []\n", CC: cc})
    assert result.descriptor == CC
    assert result.warnings == [f"{EY}: ignored, {CC} takes precedence"]


def test_lower_precedence_file_is_not_even_parsed() -> None:
    result = import_choreo({CY: "schemaVersion: 1.2\n", EY: "{{{ not yaml"})
    assert result.descriptor == CY


@pytest.mark.parametrize("version", ["1.0", "'1.0'", "1.1", '"1.1"', "1.2", "'1.2'"])
def test_known_schema_versions(version: str) -> None:
    assert component(f"schemaVersion: {version}\n").warnings == []


@pytest.mark.parametrize(("text", "expected"), [
    ("schemaVersion: 2.0\n", "schemaVersion: '2.0' is not a known schema version"),
    ("schemaVersion: 1\n", "schemaVersion: '1.0'"),
    ("endpoints: []\n", "schemaVersion: missing"),
])
def test_unknown_or_missing_schema_version_warns_and_still_imports(text: str, expected: str) -> None:
    result = component(text + "endpoints:\n  - {name: a, service: {port: 8080}, type: TCP}\n")
    if expected.startswith("schemaVersion: '1.0'"):
        assert result.warnings == []  # an integer 1 is read as 1.0
    else:
        assert result.warnings[0].startswith(f"{CY}: {expected}")
    assert result.spec["endpoints"][0]["name"] == "a"


def test_empty_file_warns() -> None:
    result = component("# nothing but a comment\n")
    assert result.warnings == [f"{CY}: the file is empty, nothing to import"]
    assert_valid(result.spec)


@pytest.mark.parametrize(("text", "field", "problem"), [
    ("endpoints: 5\n", "endpoints", "expected a list, got a number"),
    ("- a\n- b\n", "", "expected a mapping at the top level, got a list"),
    ("schemaVersion: [1]\n", "schemaVersion", "expected a version such as 1.2, got a list"),
    ("endpoints: [{name: a, service: 8080}]\n", "endpoints[0].service", "expected a mapping, got a number"),
    ("endpoints: [{name: a, service: {port: true}}]\n", "endpoints[0].service.port",
     "'True' is not a port number (1-65535)"),
    ("endpoints: [{service: {port: 80}}]\n", "endpoints[0].name", "required"),
    ("endpoints: [{name: a}]\n", "endpoints[0].service", "required"),
    ("endpoints: [{name: [a], service: {port: 80}}]\n", "endpoints[0].name", "expected a string, got a list"),
    ("endpoints: [null]\n", "endpoints[0]", "required"),
    ("endpoints: [{name: a, service: {port: 80, basePath: /a b}}]\n", "endpoints[0].service.basePath",
     "'/a b' is not a plain URL path"),
    ("configurations: {env: [{name: A, value: [1]}]}\n", "configurations.env[0].value",
     "expected a string, got a list"),
    ("proxy: {type: GRPC}\n", "proxy.type", "'GRPC' is not one of REST, GraphQL, WS"),
    ("dependencies: {connectionReferences: [{name: a}]}\n",
     "dependencies.connectionReferences[0].resourceRef", "required"),
])
def test_wrong_types_raise_invalid_error(text: str, field: str, problem: str) -> None:
    problems = invalid({CY: "schemaVersion: 1.2\n" + text if not text.startswith("-") else text})
    expected_field = f"{CY}: {field}" if field else CY
    assert problems.get(expected_field) == problem, problems


@pytest.mark.parametrize("text", [
    "a: [\n",  # unclosed flow sequence
    "a: 1\n---\nb: 2\n",  # two documents
    "a: 2020-13-45\n",  # PyYAML raises ValueError for an impossible date
    "? [a, b]\n: c\n",  # unhashable key
    "a: *missing\n",  # unknown alias
    "[" * 5000 + "]" * 5000,  # too deep for the parser's recursion
])
def test_unreadable_yaml_is_invalid_error(text: str) -> None:
    with pytest.raises(InvalidError) as info:
        component(text)
    assert info.value.details[0].field.startswith(CY)


HUGE = "1" + ":00" * 3000  # YAML 1.1 base 60: an integer too long for str() to print


@pytest.mark.parametrize("text", [
    f"schemaVersion: {HUGE}\n",
    f"endpoints: [{{name: {HUGE}, service: {{port: 80}}}}]\n",
    f"endpoints: [{{name: a, service: {{port: {HUGE}}}}}]\n",
    f"configurations: {{env: [{{name: A, value: {HUGE}}}]}}\n",
    f"{HUGE}: x\n",
])
def test_huge_base_60_numbers_do_not_crash(text: str) -> None:
    try:
        result = component(text)
    except InvalidError as e:
        assert all(len(p.problem) < 200 for p in e.details)
    else:
        assert_valid(result.spec)
        assert all(len(w) < 300 for w in result.warnings)
    with pytest.raises(InvalidError):
        import_choreo({EY: f"version: {HUGE}\nendpoints: [{{name: a, port: {HUGE}}}]\n"})


def test_yaml_error_reports_line_and_column() -> None:
    problems = invalid({CY: "schemaVersion: 1.2\nendpoints:\n  - name: a\n    port: [\n"})
    [(field, problem)] = problems.items()
    assert field.startswith(f"{CY}: line ")
    assert "column" in problem


@pytest.mark.parametrize(("port", "expected"), [("8080", 8080), ("'8080'", 8080), ("8080.0", 8080), ("1", 1)])
def test_port_forms_that_are_accepted(port: str, expected: int) -> None:
    result = component(f"endpoints: [{{name: a, service: {{port: {port}}}, type: TCP}}]\n")
    assert result.spec["endpoints"][0]["port"] == expected


@pytest.mark.parametrize("port", ["0", "65536", "-1", "80.5", "'80 80'", "abc", "[80]", "{a: 1}"])
def test_port_forms_that_are_rejected(port: str) -> None:
    problems = invalid({CY: f"endpoints: [{{name: a, service: {{port: {port}}}, type: TCP}}]\n"})
    assert f"{CY}: endpoints[0].service.port" in problems


def test_endpoint_type_and_visibility_are_normalised() -> None:
    text = "\n".join(["schemaVersion: 1.2", "endpoints:"] + [
        f"  - {{name: e{i}, service: {{port: {8000 + i}}}, type: {t}, networkVisibilities: [{v}]}}"
        for i, (t, v) in enumerate([("rest", "PUBLIC"), ("GraphQL", "organization"), ("GRPC", "project"),
                                    ("gRPC", "Project"), ("ws", "Public"), ("WebSocket", "Public"),
                                    ("tcp", "Project"), ("UDP", "Project")])
    ])
    result = component(text)
    assert [e["type"] for e in result.spec["endpoints"]] == [
        "REST", "GraphQL", "gRPC", "gRPC", "WebSocket", "WebSocket", "TCP", "UDP"]
    assert [e["visibility"][0] for e in result.spec["endpoints"]][:3] == ["Public", "Organization", "Project"]
    assert_valid(result.spec)


def test_visibility_list_wins_and_duplicates_collapse() -> None:
    result = component("schemaVersion: 1.2\nendpoints:\n  - name: a\n    service: {port: 80}\n"
                       "    networkVisibilities: [Public, public, Organization]\n"
                       "    networkVisibility: Project\n")
    assert result.spec["endpoints"][0]["visibility"] == ["Public", "Organization"]
    assert any("networkVisibility: ignored" in w for w in result.warnings)


def test_missing_type_defaults_to_rest_with_warning() -> None:
    result = component("schemaVersion: 1.2\n"
                       "endpoints: [{name: a, service: {port: 80}, networkVisibilities: [Project]}]\n")
    assert result.spec["endpoints"][0]["type"] == "REST"
    assert result.warnings == [f"{CY}: endpoints[0].type: missing (Choreo requires it); using REST"]


def test_clashing_endpoints_are_made_valid() -> None:
    text = """
schemaVersion: 1.2
endpoints:
  - {name: api_v1, service: {port: 80, basePath: /a}, networkVisibilities: [Project]}
  - {name: API-v1, service: {port: 80, basePath: /b}, networkVisibilities: [Project]}
  - {name: other, service: {port: 80, basePath: /a}, type: WS, networkVisibilities: [Project]}
  - {name: "___", service: {port: 81}, type: TCP}
  - {name: "%s", service: {port: 82}, type: TCP}
""" % ("x" * 100)
    result = component(text)
    names = [e["name"] for e in result.spec["endpoints"]]
    assert names == ["api-v1", "api-v1-2", "endpoint", "x" * 63]
    assert any("port 80 with base path /a is already served by endpoints[0]" in w for w in result.warnings)
    assert any("'api-v1' is used more than once; using 'api-v1-2'" in w for w in result.warnings)
    assert_valid(result.spec)


@pytest.mark.parametrize("path", ["../secrets.yaml", "a/../../b.yaml"])
def test_schema_file_outside_the_source_is_dropped(path: str) -> None:
    result = component(f"schemaVersion: 1.2\nendpoints: [{{name: a, service: {{port: 80}}, "
                       f"networkVisibilities: [Project], schemaFilePath: '{path}'}}]\n")
    assert "contract" not in result.spec["endpoints"][0]
    assert any("points outside the source" in w for w in result.warnings)


def test_leading_slash_schema_file_is_relative() -> None:
    result = component("schemaVersion: 1.2\nendpoints: [{name: a, service: {port: 80}, "
                       "networkVisibilities: [Project], schemaFilePath: /api/openapi.yaml}]\n")
    assert result.spec["endpoints"][0]["contract"] == "api/openapi.yaml"


# --- connections and configuration -----------------------------------------------------------


@pytest.mark.parametrize(("ref", "kind", "project", "comp", "visibility"), [
    ("service:/HRProject/UserComponent/v1/ad088/PUBLIC", "service", "HRProject", "UserComponent", "PUBLIC"),
    ("service:/mttm/mmvhxd/v1.1/ad088/PUBLIC", "service", "mttm", "mmvhxd", "PUBLIC"),
    ("service:/component/v1/ad088/PUBLIC", "service", None, "component", "PUBLIC"),
    ("mmvhxd/v1.1/ad088/PROJECT", "service", None, "mmvhxd", "PROJECT"),
    ("/proj/comp/v2", "service", "proj", "comp", None),
    ("comp/v1", "service", None, "comp", None),
    ("comp/v1/ep", "service", None, "comp", None),
    ("database:mySqlDbServer/hotelDb", "database", None, None, None),
    ("thirdparty:stripe/v1", "thirdparty", None, None, None),
    ("https://example.com/v1", "unknown", None, None, None),
    ("service:/a/b/c/v1", "unknown", None, None, None),
    ("v1/comp", "unknown", None, None, None),
    ("comp", "unknown", None, None, None),
])
def test_parse_resource_ref(ref: str, kind: str, project: str | None, comp: str | None,
                            visibility: str | None) -> None:
    parsed = parse_resource_ref(ref)
    got = (parsed.kind, parsed.project, parsed.component, parsed.visibility)
    assert got == (kind, project, comp, visibility)


@pytest.mark.parametrize(("name", "kind", "project", "comp"), [
    ("choreo:///apifirst/mttm/mmvhxd/ad088/v1.0/PUBLIC", "service", "mttm", "mmvhxd"),
    ("choreo:///org/proj/comp/ep/v2/PROJECT", "service", "proj", "comp"),
    ("choreo://org/proj/comp/ep/v2/PROJECT", "unknown", None, None),
    ("choreo:///org/proj/comp/ep/latest/PUBLIC", "unknown", None, None),
    ("database:hrdbProd", "database", None, None),
    ("thirdparty:service_v1.0/path", "thirdparty", None, None),
])
def test_parse_service_reference(name: str, kind: str, project: str | None, comp: str | None) -> None:
    parsed = parse_service_reference(name)
    assert (parsed.kind, parsed.project, parsed.component) == (kind, project, comp)


def test_unparseable_connection_is_left_out_with_warning() -> None:
    result = component("""
schemaVersion: 1.2
dependencies:
  connectionReferences:
    - {name: weird, resourceRef: "not a ref"}
    - {name: stripe, resourceRef: "thirdparty:stripe/v1"}
configurations:
  env:
    - name: STRIPE_KEY
      valueFrom: {connectionRef: {name: stripe, key: ChoreoAPIKey}}
    - name: GHOST_URL
      valueFrom: {connectionRef: {name: ghost, key: ServiceURL}}
""")
    assert result.spec["dependencies"] == []
    assert result.spec["configuration"]["env"] == [{"name": "STRIPE_KEY", "secret": True},
                                                   {"name": "GHOST_URL"}]
    assert any("'not a ref' is not a reference Cellplane can resolve" in w for w in result.warnings)
    assert any("third-party" in w and "'stripe' is not imported" in w for w in result.warnings)
    assert any("connection 'ghost' is not imported (no such connection" in w for w in result.warnings)
    assert_valid(result.spec)


def test_connection_names_become_labels_and_stay_unique() -> None:
    result = component("""
schemaVersion: 1.1
dependencies:
  connectionReferences:
    - {name: Valid Connection Name, resourceRef: "service:/a/v1/x/PROJECT"}
    - {name: valid_connection.name, resourceRef: "service:/b/v1/x/PROJECT"}
configurations:
  env:
    - name: B_URL
      valueFrom: {connectionRef: {name: valid_connection.name, key: serviceurl}}
""")
    deps = result.spec["dependencies"]
    assert [d["name"] for d in deps] == ["valid-connection-name", "valid-connection-name-2"]
    assert deps[0]["env"] == [{"from": "ServiceURL", "to": "CHOREO_VALID_CONNECTION_NAME_SERVICEURL"}]
    assert deps[1]["env"] == [{"from": "ServiceURL", "to": "B_URL"}]
    assert_valid(result.spec)


def test_service_reference_env_problems_are_warnings() -> None:
    result = component("""
schemaVersion: 1.0
dependencies:
  serviceReferences:
    - name: choreo:///o/p/comp/ep/v1/PUBLIC
      connectionConfig: 19d2648b-d29c-4452-afdd-1b9311e81412
      env:
        - {from: ServiceURL, to: <YOUR_ENV_VARIABLE_NAME_HERE>}
        - {from: HostName, to: HOST}
        - {from: ChoreoAPIKey, to: API_KEY}
""")
    assert result.spec["dependencies"] == [{"name": "comp", "component": "comp", "project": "p",
                                            "env": [{"from": "APIKey", "to": "API_KEY"}]}]
    assert result.spec["configuration"]["env"] == [{"name": "HOST"}]
    assert any("'<YOUR_ENV_VARIABLE_NAME_HERE>' is not a valid environment variable name" in w
               for w in result.warnings)
    assert any("connection key 'HostName' has no Cellplane equivalent" in w for w in result.warnings)


def test_environment_variable_clashes_are_resolved() -> None:
    result = component("""
schemaVersion: 1.2
dependencies:
  connectionReferences:
    - {name: a, resourceRef: "service:/a/v1/x/PROJECT"}
configurations:
  env:
    - name: A_URL
      valueFrom: {connectionRef: {name: a, key: ServiceURL}}
    - {name: A_URL, value: http://elsewhere}
    - {name: PLAIN, value: 1}
    - {name: PLAIN, value: 2}
    - {name: FLAG, value: true}
    - {name: "NOT VALID", value: x}
""")
    assert result.spec["dependencies"][0]["env"] == [{"from": "ServiceURL", "to": "A_URL"}]
    assert result.spec["configuration"]["env"] == [{"name": "PLAIN", "value": "1"},
                                                   {"name": "FLAG", "value": "true"}]
    assert sum("is already set elsewhere" in w for w in result.warnings) == 2
    assert any("'NOT VALID' is not a valid environment variable name" in w for w in result.warnings)
    assert_valid(result.spec)


def test_config_group_and_version_hints() -> None:
    result = component("""
schemaVersion: 1.0
configurations:
  env:
    - name: FROM_GROUP
      valueFrom: {configGroupRef: {name: g, key: k}}
""")
    assert result.spec["configuration"]["env"] == [{"name": "FROM_GROUP"}]
    assert f"{CY}: configurations: needs schemaVersion 1.1 or later (file says 1.0); imported anyway" \
        in result.warnings
    assert any("configuration groups are not imported" in w for w in result.warnings)


@pytest.mark.parametrize(("mount", "name", "expected"), [
    ("/src/resources", "application.yaml", "/src/resources/application.yaml"),
    ("/src/resources/", "application.yaml", "/src/resources/application.yaml"),
    ("/etc/app/config.toml", "config.toml", "/etc/app/config.toml"),
    ("etc/app", "config.json", "/etc/app/config.json"),
])
def test_configuration_file_mount_paths(mount: str, name: str, expected: str) -> None:
    result = component(f"schemaVersion: 1.2\nconfigurations:\n  file:\n"
                       f"    - {{name: {name}, mountPath: {mount}, type: yaml, "
                       "values: [{name: k, valueFrom: {configForm: {type: secret}}}]}\n")
    [item] = result.spec["configuration"]["files"]
    assert item["mountPath"] == expected
    assert item["secret"] is True
    assert_valid(result.spec)


def test_configuration_files_that_clash_or_escape() -> None:
    result = component("""
schemaVersion: 1.2
configurations:
  file:
    - {name: a.yaml, mountPath: /cfg, type: yaml, values: []}
    - {name: a.yaml, mountPath: /cfg, type: yaml, values: []}
    - {name: a.yaml, mountPath: /other, type: ini, values: []}
    - {name: b.yaml, mountPath: /cfg/../../etc, type: yaml, values: []}
""")
    files = result.spec["configuration"]["files"]
    assert files == [{"name": "a-yaml", "mountPath": "/cfg/a.yaml"},
                     {"name": "a-yaml-2", "mountPath": "/other/a.yaml"}]
    assert any("another file is already mounted at /cfg/a.yaml" in w for w in result.warnings)
    assert any("'ini' is not a configuration file type" in w for w in result.warnings)
    assert any("leaves the container's file tree" in w for w in result.warnings)
    assert_valid(result.spec)


def test_component_config_build_pins_the_source() -> None:
    cc = ("apiVersion: core.choreo.dev/v1beta1\nkind: ComponentConfig\nspec:\n"
          "  build: {branch: main, revision: 3f2a9c1}\n  image: {registry: r, repository: x, tag: y}\n")
    result = import_choreo({CC: cc})
    assert result.spec["source"] == {"ref": "3f2a9c1"}
    assert any("Cellplane takes a branch or a ref" in w for w in result.warnings)
    assert any(w.startswith(f"{CC}: spec.image: not imported") for w in result.warnings)
    assert_valid(result.spec)


def test_wrong_header_of_older_files_warns() -> None:
    result = import_choreo({CC: "apiVersion: core.choreo.dev/v1alpha1\nkind: Component\n"})
    assert [w.split(": ")[1] for w in result.warnings] == ["apiVersion", "kind"]
    result = import_choreo({EY: "endpoints: []\n"})
    assert result.warnings == [f"{EY}: version: missing (Choreo requires it); read as 0.1"]


def test_warnings_are_capped() -> None:
    text = "schemaVersion: 1.2\n" + "".join(f"k{i}: 1\n" for i in range(1000))
    result = component(text)
    assert len(result.warnings) == 201
    assert result.warnings[-1] == f"{CY}: 800 more warnings not shown"


def test_dns_label() -> None:
    assert dns_label("fhir_mcp_server") == "fhir-mcp-server"
    assert dns_label(" Greeting  Service ") == "greeting-service"
    assert dns_label("a__b..c") == "a-b-c"
    assert dns_label("-Ünïcode-") == "ncode"
    assert dns_label("x" * 70 + "-y") == "x" * 63
    assert dns_label("x" * 62 + "-y") == "x" * 62


# --- reading a checkout ----------------------------------------------------------------------


def test_read_descriptor_files_reads_what_is_there(tmp_path: Path) -> None:
    write(tmp_path, EY, "version: 0.1\nendpoints: []\n")
    write(tmp_path, CY, "\ufeffschemaVersion: 1.2\n".encode())  # a UTF-8 BOM is tolerated
    files = read_descriptor_files(tmp_path)
    assert files == {CY: "schemaVersion: 1.2\n", EY: "version: 0.1\nendpoints: []\n"}


def test_symlink_inside_the_repository_is_followed(tmp_path: Path) -> None:
    write(tmp_path, "config/choreo.yaml", "schemaVersion: 1.2\n")
    (tmp_path / ".choreo").mkdir()
    (tmp_path / CY).symlink_to(tmp_path / "config/choreo.yaml")
    assert read_descriptor_files(tmp_path) == {CY: "schemaVersion: 1.2\n"}


def test_symlink_pointing_outside_is_refused(tmp_path: Path) -> None:
    secret = write(tmp_path, "outside/secret.yaml", "schemaVersion: 1.2\n")
    repo = tmp_path / "repo"
    write(repo, EY, "version: 0.1\nendpoints: []\n")
    (repo / CY).symlink_to(secret)
    assert read_descriptor_files(repo) == {EY: "version: 0.1\nendpoints: []\n"}
    # component.yaml would have taken precedence: importing endpoints.yaml instead would be wrong.
    with pytest.raises(InvalidError) as info:
        import_directory(repo)
    assert info.value.details[0].field == CY
    assert "outside the repository" in info.value.details[0].problem


def test_choreo_directory_symlinked_outside_is_refused(tmp_path: Path) -> None:
    write(tmp_path, "elsewhere/component.yaml", "schemaVersion: 1.2\n")
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / ".choreo").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    assert read_descriptor_files(repo) == {}


def test_refused_lower_precedence_file_is_a_warning(tmp_path: Path) -> None:
    write(tmp_path, CY, "schemaVersion: 1.2\n")
    write(tmp_path, EY, "x" * (1024 * 1024 + 1))
    result = import_directory(tmp_path)
    assert result.descriptor == CY
    assert result.warnings == [f"{EY}: is larger than 1 MiB; ignored"]


@pytest.mark.parametrize("kind", ["large", "binary", "directory", "dangling", "fifo"])
def test_unreadable_files_are_skipped(tmp_path: Path, kind: str) -> None:
    target = tmp_path / CY
    target.parent.mkdir()
    if kind == "large":
        target.write_text("#" * (1024 * 1024 + 1))
    elif kind == "binary":
        target.write_bytes(b"\xff\xfe\x00bad")
    elif kind == "directory":
        target.mkdir()
    elif kind == "dangling":
        target.symlink_to(tmp_path / "missing.yaml")
    elif kind == "fifo":
        if not hasattr(os, "mkfifo"):
            pytest.skip("no FIFOs here")
        os.mkfifo(target)
    assert read_descriptor_files(tmp_path) == {}
    with pytest.raises(InvalidError):
        import_directory(tmp_path)


def test_exactly_one_mebibyte_is_accepted(tmp_path: Path) -> None:
    text = "schemaVersion: 1.2\n"
    write(tmp_path, CY, text + "#" * (1024 * 1024 - len(text)))
    assert CY in read_descriptor_files(tmp_path)


# --- property: nothing but InvalidError ------------------------------------------------------

KEYS = ["schemaVersion", "endpoints", "dependencies", "configurations", "proxy", "name", "displayName",
        "service", "basePath", "port", "type", "networkVisibilities", "networkVisibility", "schemaFilePath",
        "connectionReferences", "serviceReferences", "resourceRef", "connectionConfig", "env", "from", "to",
        "file", "mountPath", "values", "valueFrom", "connectionRef", "configForm", "configGroupRef", "key",
        "value", "docPath", "thumbnailPath", "required", "apiVersion", "kind", "spec", "inbound", "outbound",
        "context", "version", "build", "branch", "revision"]
WORDS = ["REST", "grpc", "WS", "UDP", "Public", "project", "1.2", "1.0", "0.1", "/api", "api", "a_b", "Ünï",
         "service:/p/c/v1/x/PUBLIC", "c/v1", "choreo:///o/p/c/e/v1/PUBLIC", "database:db", "thirdparty:x/v1",
         "ServiceURL", "ChoreoAPIKey", "HostName", "A_VAR", "secret", "../x", "/", "8080",
         "core.choreo.dev/v1beta1", "ComponentConfig"]
scalars = (st.none() | st.booleans() | st.integers(-5, 70_000) | st.floats() | st.text(max_size=12)
           | st.sampled_from(WORDS))
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6),
                                                                inner, max_size=6),
    max_leaves=40,
)
documents = st.dictionaries(st.sampled_from(KEYS), values, max_size=6) | values


def assert_only_invalid_error(files: dict[str, str]) -> None:
    try:
        result = import_choreo(files)
    except InvalidError as e:
        assert e.details
        # The final validate_spec check is a safety net; reaching it means the mapping has a bug.
        assert "could not be mapped" not in e.message, e.details
        return
    assert_valid(result.spec)
    assert all(isinstance(w, str) for w in result.warnings)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=documents, file=st.sampled_from(DESCRIPTOR_FILES))
def test_arbitrary_yaml_data_raises_only_invalid_error(data: object, file: str) -> None:
    assert_only_invalid_error({file: yaml.safe_dump(data, allow_unicode=True)})


@settings(max_examples=200, deadline=None)
@given(data=documents)
def test_arbitrary_component_yaml_raises_only_invalid_error(data: object) -> None:
    assert_only_invalid_error({CY: yaml.safe_dump(data)})


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=200))
def test_arbitrary_text_raises_only_invalid_error(text: str) -> None:
    assert_only_invalid_error({CY: text})


# Documents shaped like real descriptors, each value usually plausible and sometimes anything at all:
# random nesting alone rarely reaches an endpoint's port, so this is what exercises the mapping.


def shaped(plausible: st.SearchStrategy) -> st.SearchStrategy:
    """Mostly ``plausible``; sometimes missing (None reads as missing) or anything at all."""
    return st.one_of(*[plausible] * 6, st.none(), values)


def some(**fields: st.SearchStrategy) -> st.SearchStrategy:
    return st.fixed_dictionaries({k: shaped(v) for k, v in fields.items()})


def lists_of(item: st.SearchStrategy) -> st.SearchStrategy:
    return st.lists(item, max_size=4)


names = st.sampled_from(["api", "api", "a_b", "Greeting Service", "x" * 70, "", "-", "Ünï"])
ports = st.sampled_from([80, 8080, 8080, "8080", 0, 70000, "abc", 8080.0])
types = st.sampled_from(["REST", "rest", "GRPC", "WS", "TCP", "UDP", "GraphQL", "pdf"])
visibility = st.sampled_from(["Public", "project", "Organization", "Private"])
paths = st.sampled_from(["openapi.yaml", "/x.yaml", "../x", "./a/b", "a\\b", "/", "api", "/a b", "/api"])
env_names = st.sampled_from(["A", "A", "B_URL", "NOT VALID", "<X>", "_x1"])
conn_names = st.sampled_from(["conn", "conn", "Other Conn", "db", "ghost"])
refs = st.sampled_from(["service:/p/c/v1/x/PUBLIC", "service:/c/v1", "c/v1/x/PROJECT", "database:db",
                        "thirdparty:s/v1", "nope", "/P_1/C_1/v2/e/ORGANIZATION"])
keys = st.sampled_from(["ServiceURL", "ChoreoAPIKey", "consumersecret", "HostName", "TokenURL"])
form = some(displayName=st.text(max_size=5), required=st.booleans(),
            type=st.sampled_from(["string", "secret", "number", "object"]))
value_from = st.one_of(some(connectionRef=some(name=conn_names, key=keys)), some(configForm=form),
                       some(configGroupRef=some(name=names, key=names)))

endpoint = some(name=names, displayName=st.text(max_size=5), service=some(port=ports, basePath=paths),
                type=types, networkVisibilities=lists_of(visibility), networkVisibility=visibility,
                schemaFilePath=paths)
legacy_endpoint = some(name=names, port=ports, type=types, networkVisibility=visibility, context=paths,
                       schemaFilePath=paths)
service_ref = some(name=st.sampled_from(["choreo:///o/p/c/e/v1/PUBLIC", "choreo:///o/P/C/e/v1/PROJECT",
                                         "database:db", "thirdparty:x/v1", "bad"]),
                   connectionConfig=st.uuids().map(str),
                   env=lists_of(some(**{"from": keys, "to": env_names})))
component_doc = some(
    schemaVersion=st.sampled_from([1.0, 1.1, 1.2, "1.2", 2, "x"]),
    endpoints=lists_of(endpoint),
    dependencies=some(connectionReferences=lists_of(some(name=conn_names, resourceRef=refs)),
                      serviceReferences=lists_of(service_ref)),
    configurations=some(
        env=lists_of(some(name=env_names, value=st.none() | st.none() | st.text(max_size=5) | st.integers(),
                          valueFrom=value_from)),
        file=lists_of(some(name=st.sampled_from(["app.yaml", "app.yaml", "..", "a/b.json"]),
                           mountPath=st.sampled_from(["/cfg", "/cfg", "cfg", "/a/../..", "/cfg/app.yaml"]),
                           type=st.sampled_from(["yaml", "ini"]),
                           values=lists_of(some(name=names, valueFrom=value_from, type=st.just("secret")))))),
    proxy=some(type=types, schemaFilePath=paths, docPath=paths, thumbnailPath=paths,
               networkVisibilities=lists_of(visibility)),
)
component_config_doc = some(
    apiVersion=st.just("core.choreo.dev/v1beta1"), kind=st.just("ComponentConfig"),
    spec=some(inbound=lists_of(legacy_endpoint), outbound=some(serviceReferences=lists_of(service_ref)),
              build=some(branch=names, revision=names)),
)
endpoints_doc = some(version=st.sampled_from([0.1, "0.1", 1]), endpoints=lists_of(legacy_endpoint))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(files=st.one_of(
    component_doc.map(lambda d: {CY: d}),
    component_config_doc.map(lambda d: {CC: d}),
    endpoints_doc.map(lambda d: {EY: d}),
))
def test_descriptor_shaped_data_raises_only_invalid_error(files: dict[str, object]) -> None:
    assert_only_invalid_error({rel: yaml.safe_dump(data, allow_unicode=True) for rel, data in files.items()})
