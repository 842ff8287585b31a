"""The resource model: documents of every kind, validated all at once, each problem at its exact path."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cellplane import API_VERSION
from cellplane.errors import CellplaneError, InvalidError
from cellplane.model import KINDS, Document, dns_label_problem, kind_info, parse_document, validate_spec
from cellplane.model.component import ComponentType
from cellplane.model.meta import drop_none


def raw(kind: str, name: str = "x", spec: Any = None, **metadata: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"apiVersion": API_VERSION, "kind": kind, "metadata": {"name": name, **metadata}}
    if spec is not None:
        doc["spec"] = spec
    return doc


def problems(document: Any) -> dict[str, str]:
    """Field path -> problem, for a document that must be invalid (paths must not repeat)."""
    with pytest.raises(InvalidError) as caught:
        parse_document(document)
    error = caught.value
    assert error.status == 422 and error.code == "invalid"
    paths = [p.field for p in error.details]
    assert len(paths) == len(set(paths)), f"a path is reported twice: {paths}"
    return {p.field: p.problem for p in error.details}


def component(spec: dict[str, Any], name: str = "api") -> dict[str, Any]:
    return raw("Component", name, spec, project="shop")


# -- valid documents round-trip --------------------------------------------------------------------------------------

VALID = [
    raw("Organization", "acme", {"displayName": "ACME", "description": "the company"}, labels={"tier": "gold"}),
    raw("DataPlane", "local", {"type": "local", "gateway": {"externalUrl": "http://localhost:8080"}}),
    raw("DataPlane", "k8s", {"type": "kubernetes", "kubernetes": {"context": "kind", "namespacePrefix": "cp"}}),
    raw("Environment", "staging", {"dataPlane": "local", "production": False, "requiresApproval": True}),
    raw("DeploymentPipeline", "default", {"promotionPaths": [
        {"source": "development", "targets": [{"name": "staging"}]},
        {"source": "staging", "targets": [{"name": "production", "requiresApproval": True}]}]}),
    raw("Project", "shop", {"displayName": "Shop", "deploymentPipeline": "default"}, organization="acme"),
    raw("Component", "orders", {
        "type": "service",
        "source": {"repository": "https://github.com/acme/shop", "branch": "main", "path": "orders"},
        "build": {"mode": "dockerfile", "dockerfile": "Dockerfile"},
        "endpoints": [{"name": "api", "port": 8080, "basePath": "/orders", "visibility": ["Public", "Project"]},
                      {"name": "grpc", "port": 9090, "type": "gRPC"}],
        "dependencies": [{"name": "payments", "component": "payments", "endpoint": "api",
                          "env": [{"from": "ServiceURL", "to": "PAYMENTS_URL"}]},
                         {"name": "stripe", "url": "https://api.stripe.com", "env": [{"from": "APIKey", "to": "KEY"}]}],
        "configuration": {"env": [{"name": "LOG_LEVEL", "value": "info", "environments": {"production": "warn"}},
                                  {"name": "DB_PASSWORD", "secret": True}],
                          "files": [{"name": "app-yaml", "mountPath": "/etc/app/app.yaml", "content": "a: 1"}]},
        "replicas": 2, "scaling": {"minReplicas": 1, "maxReplicas": 3},
        "resources": {"cpu": "500m", "memory": "256Mi"},
    }, organization="acme", project="shop", labels={"app.kubernetes.io/name": "orders"}, annotations={"a": "[any]"}),
]


@pytest.mark.parametrize("document", VALID, ids=lambda d: f"{d['kind']}-{d['metadata']['name']}")
def test_valid_documents_round_trip(document: dict[str, Any]) -> None:
    doc = parse_document(document)
    assert isinstance(doc, Document)
    assert (doc.kind, doc.name, doc.info.kind) == (document["kind"], document["metadata"]["name"], document["kind"])
    spec = doc.spec_dict()
    # Everything given comes back (defaults are added, nothing is lost or renamed).
    assert _contains(spec, document.get("spec") or {})
    again = parse_document({"apiVersion": API_VERSION, "kind": doc.kind,
                            "metadata": doc.metadata.model_dump(mode="json", exclude_none=True), "spec": spec})
    assert again.spec_dict() == spec
    assert again.metadata == doc.metadata


def _contains(big: Any, small: Any) -> bool:
    if isinstance(small, dict):
        return isinstance(big, dict) and all(k in big and _contains(big[k], v) for k, v in small.items())
    if isinstance(small, list):
        return isinstance(big, list) and len(big) == len(small) and all(map(_contains, big, small))
    return big == small


def test_server_owned_fields_and_status_are_accepted_so_get_output_can_be_applied_again() -> None:
    document = raw("Project", "shop", {}, organization="default", uid="0f6c1c9e-0000-4000-8000-000000000000",
                   generation=3, creationTimestamp="2030-01-01T00:00:00+00:00",
                   updateTimestamp="2030-01-02T00:00:00+00:00")
    document["status"] = {"anything": ["goes"]}
    doc = parse_document(document)
    assert doc.metadata.generation == 3
    created = doc.metadata.creationTimestamp
    assert created is not None and created.utcoffset() is not None and created.utcoffset().total_seconds() == 0


def test_missing_or_null_spec_means_defaults() -> None:
    for document in (raw("Project", "a"), raw("Project", "a") | {"spec": None}):
        assert parse_document(document).spec_dict() == {
            "deploymentPipeline": "default",
            "buildPolicy": {"failOn": {"secrets": True, "vulnerabilities": "critical", "staticAnalysis": "none",
                                       "tests": True}}}


def test_connection_env_takes_from_by_alias_and_dumps_it_back() -> None:
    doc = parse_document(component({"dependencies": [{"name": "d", "url": "https://x.io",
                                                      "env": [{"from": "ServiceURL", "to": "X_URL"}]}]}))
    assert doc.spec_dict()["dependencies"][0]["env"] == [{"from": "ServiceURL", "to": "X_URL"}]


# -- every problem at once -------------------------------------------------------------------------------------------


def test_every_problem_is_reported_at_once_with_exact_paths() -> None:
    document = component({
        "endpoints": [{"name": "api", "port": 70000}, {"name": "api", "port": 8080}],
        "colour": "red",
    }, name="Bad_Name!")
    document["metadata"]["colour"] = "blue"
    document["extra"] = 1
    found = problems(document)
    assert set(found) == {"extra", "metadata.name", "metadata.colour", "spec.endpoints[0].port", "spec.colour",
                          "spec.endpoints[1].name"}
    assert found["extra"] == found["spec.colour"] == found["metadata.colour"] == "unknown field"
    assert "DNS-1123" in found["metadata.name"]
    assert "65535" in found["spec.endpoints[0].port"]
    assert found["spec.endpoints[1].name"] == "'api' is used more than once"


def test_the_error_message_names_the_document() -> None:
    with pytest.raises(InvalidError, match=r"^Component 'Bad_Name!' is not valid$"):
        parse_document(component({}, name="Bad_Name!"))
    with pytest.raises(InvalidError, match=r"^document is not valid$"):
        parse_document({})


def test_cross_field_and_single_field_rules_are_reported_together() -> None:
    found = problems(component({
        "type": "scheduled-task",
        "schedule": {"cron": "every day"},
        "endpoints": [{"name": "api", "port": 80}, {"name": "other", "port": 80}],
        "resources": {"cpu": "lots", "memory": "1.5Gi"},
        "scaling": {"minReplicas": 5, "maxReplicas": 2},
        "source": {"branch": "main", "ref": "v1"},
    }))
    assert set(found) == {"spec.schedule.cron", "spec.resources.cpu", "spec.resources.memory"}
    # Single-field rules hold even when another field is structurally broken too.
    found = problems(component({"configuration": {"env": [{"name": "1A"}, {"name": "A"}, {"name": "A"}]},
                                "resources": {"cpu": "lots"}, "schedule": {"cron": "nope"}, "type": "scheduled-task",
                                "dependencies": [{"name": "d", "url": "not-a-url"}, {"name": "d", "url": "x"}]}))
    assert set(found) == {"spec.configuration.env[0].name", "spec.configuration.env[2].name", "spec.resources.cpu",
                          "spec.schedule.cron", "spec.dependencies[0].url", "spec.dependencies[1].url",
                          "spec.dependencies[1].name"}
    # With a sound structure, the cross-field rules all show up.
    found = problems(component({
        "type": "scheduled-task",
        "endpoints": [{"name": "api", "port": 80}, {"name": "other", "port": 80}],
        "scaling": {"minReplicas": 5, "maxReplicas": 2},
        "source": {"branch": "main", "ref": "v1"},
        "build": {"mode": "command"},
    }))
    assert set(found) == {"spec.schedule", "spec.endpoints", "spec.endpoints[1].port", "spec.scaling",
                          "spec.source.ref", "spec.build.command"}


# -- names -----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a", "0", "123", "a-b", "a--b", "x" * 63, "a1-b2-c3", "9lives"])
def test_dns_1123_labels_accepted(name: str) -> None:
    assert dns_label_problem(name) is None
    assert parse_document(raw("Project", name)).name == name


@pytest.mark.parametrize(("name", "why"), [
    ("x" * 64, "at most 63 characters (got 64)"),
    ("-a", "DNS-1123"), ("a-", "DNS-1123"), ("-", "DNS-1123"), ("Shop", "DNS-1123"), ("SHOP", "DNS-1123"),
    ("a_b", "DNS-1123"), ("a.b", "DNS-1123"), ("a b", "DNS-1123"), ("é", "DNS-1123"), ("", "must not be empty"),
    ("abc\n", "DNS-1123"),  # '$' would match before a trailing newline
])
def test_dns_1123_labels_rejected(name: str, why: str) -> None:
    problem = dns_label_problem(name)
    assert problem is not None and why in problem
    assert why in problems(raw("Project", name))["metadata.name"]


def test_names_inside_specs_are_dns_labels_too() -> None:
    found = problems(raw("DeploymentPipeline", "p", {"promotionPaths": [
        {"source": "Dev", "targets": [{"name": "stag_ing"}]}]}))
    assert set(found) == {"spec.promotionPaths[0].source", "spec.promotionPaths[0].targets[0].name"}
    assert set(problems(raw("Project", "p", {"deploymentPipeline": "-x"}))) == {"spec.deploymentPipeline"}
    assert set(problems(raw("Environment", "e", {"dataPlane": "A"}))) == {"spec.dataPlane"}


@pytest.mark.parametrize("value", [5, None, ["a"], {"a": 1}, True])
def test_a_name_must_be_a_string(value: Any) -> None:
    assert "metadata.name" in problems(raw("Project", value))


def test_metadata_must_be_a_mapping_with_a_name() -> None:
    assert set(problems({"apiVersion": API_VERSION, "kind": "Project"})) == {"metadata"}
    assert set(problems({"apiVersion": API_VERSION, "kind": "Project", "metadata": "shop"})) == {"metadata"}
    assert problems({"apiVersion": API_VERSION, "kind": "Project", "metadata": {}}) == {"metadata.name": "required"}


# -- component types -------------------------------------------------------------------------------------------------

TYPES: tuple[str, ...] = ComponentType.__args__  # type: ignore[attr-defined]


def test_component_types_are_the_documented_seven() -> None:
    assert set(TYPES) == {"service", "web-app", "scheduled-task", "manual-task", "webhook", "api-proxy", "worker"}


@pytest.mark.parametrize("type_", TYPES)
def test_every_component_type_has_a_valid_minimal_form(type_: str) -> None:
    spec: dict[str, Any] = {"type": type_}
    if type_ == "scheduled-task":
        spec["schedule"] = {"cron": "*/5 * * * *"}
    if type_ == "api-proxy":
        spec["proxy"] = {"upstream": "https://backend.example.com", "type": "REST"}
    if type_ not in ("scheduled-task", "manual-task"):
        spec["endpoints"] = [{"name": "http", "port": 8080}]
    assert parse_document(component(spec)).spec_dict()["type"] == type_


def test_unknown_component_type() -> None:
    assert set(problems(component({"type": "lambda"}))) == {"spec.type"}


@pytest.mark.parametrize("cron", ["* * * * *", "*/5 * * * *", "0 3 * * 1-5", "@daily", "0 0 1 1 *"])
def test_scheduled_task_with_a_valid_cron(cron: str) -> None:
    doc = parse_document(component({"type": "scheduled-task", "schedule": {"cron": cron, "timezone": "UTC"}}))
    assert doc.spec_dict()["schedule"]["cron"] == cron


@pytest.mark.parametrize("cron", ["", "every day", "61 * * * *", "* * *", "*/0 * * * *"])
def test_scheduled_task_with_an_invalid_cron(cron: str) -> None:
    found = problems(component({"type": "scheduled-task", "schedule": {"cron": cron}}))
    assert found == {"spec.schedule.cron": f"'{cron}' is not a valid cron expression"}


@pytest.mark.parametrize("zone", ["Mars/Olympus", "../etc/passwd", ""])
def test_a_schedule_in_an_unknown_time_zone_is_refused(zone: str) -> None:
    found = problems(component({"type": "scheduled-task", "schedule": {"cron": "* * * * *", "timezone": zone}}))
    assert set(found) == {"spec.schedule.timezone"} and "not a known time zone" in found["spec.schedule.timezone"]
    ok = parse_document(component({"type": "scheduled-task", "schedule": {"cron": "0 3 * * *",
                                                                          "timezone": "Europe/Berlin"}}))
    assert ok.spec_dict()["schedule"]["timezone"] == "Europe/Berlin"


def test_scheduled_task_needs_a_schedule() -> None:
    assert problems(component({"type": "scheduled-task"})) == {
        "spec.schedule": "a scheduled-task needs a schedule (cron)"}
    assert problems(component({"type": "scheduled-task", "schedule": {}})) == {"spec.schedule.cron": "required"}


@pytest.mark.parametrize("type_", [t for t in TYPES if t != "scheduled-task"])
def test_only_scheduled_tasks_take_a_schedule(type_: str) -> None:
    spec: dict[str, Any] = {"type": type_, "schedule": {"cron": "* * * * *"}}
    if type_ == "api-proxy":
        spec["proxy"] = {}
    found = problems(component(spec))
    assert found == {"spec.schedule": f"only scheduled-task components take a schedule (type is '{type_}')"}


@pytest.mark.parametrize("type_", ["scheduled-task", "manual-task"])
def test_tasks_reject_endpoints(type_: str) -> None:
    spec: dict[str, Any] = {"type": type_, "endpoints": [{"name": "http", "port": 80}]}
    if type_ == "scheduled-task":
        spec["schedule"] = {"cron": "@hourly"}
    assert problems(component(spec)) == {"spec.endpoints": f"a {type_} runs to completion and exposes no endpoints"}


def test_api_proxy_needs_its_proxy_section_and_only_it_takes_one() -> None:
    assert set(problems(component({"type": "api-proxy"}))) == {"spec.proxy"}
    assert set(problems(component({"type": "service", "proxy": {}}))) == {"spec.proxy"}


# -- endpoints -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("endpoint", "path"), [
    ({"name": "a", "port": 0}, "spec.endpoints[0].port"),
    ({"name": "a", "port": 65536}, "spec.endpoints[0].port"),
    ({"name": "a", "port": "http"}, "spec.endpoints[0].port"),
    ({"name": "a"}, "spec.endpoints[0].port"),
    ({"port": 80}, "spec.endpoints[0].name"),
    ({"name": "a", "port": 80, "type": "SOAP"}, "spec.endpoints[0].type"),
    ({"name": "a", "port": 80, "basePath": "api"}, "spec.endpoints[0].basePath"),
    ({"name": "a", "port": 80, "basePath": "/a b"}, "spec.endpoints[0].basePath"),
    ({"name": "a", "port": 80, "basePath": "/a?b"}, "spec.endpoints[0].basePath"),
    ({"name": "a", "port": 80, "visibility": []}, "spec.endpoints[0].visibility"),
    ({"name": "a", "port": 80, "visibility": ["Internet"]}, "spec.endpoints[0].visibility[0]"),
    ({"name": "a", "port": 80, "visibility": ["Public", "Public"]}, "spec.endpoints[0].visibility[1]"),
    ({"name": "a", "port": 80, "type": "TCP", "basePath": "/x"}, "spec.endpoints[0].basePath"),
    ({"name": "a", "port": 80, "contract": "/abs/openapi.yaml"}, "spec.endpoints[0].contract"),
    ({"name": "a", "port": 80, "contract": "../openapi.yaml"}, "spec.endpoints[0].contract"),
    ({"name": "a", "port": 80, "colour": "red"}, "spec.endpoints[0].colour"),
])
def test_endpoint_problems(endpoint: dict[str, Any], path: str) -> None:
    assert set(problems(component({"endpoints": [endpoint]}))) == {path}


def test_duplicate_endpoints() -> None:
    found = problems(component({"endpoints": [{"name": "a", "port": 80}, {"name": "a", "port": 81},
                                              {"name": "b", "port": 80, "basePath": "/"}]}))
    assert found == {"spec.endpoints[1].name": "'a' is used more than once",
                     "spec.endpoints[2].port": "another endpoint already serves this port and base path"}
    # The same port under other base paths is fine.
    parse_document(component({"endpoints": [{"name": "a", "port": 80, "basePath": "/a"},
                                            {"name": "b", "port": 80, "basePath": "/b"}]}))


# -- dependencies ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("dependency", "expected"), [
    ({"name": "d"}, {"spec.dependencies[0]"}),
    ({"name": "d", "component": "c", "url": "https://x.io"}, {"spec.dependencies[0]"}),
    ({"name": "d", "url": "x.io"}, {"spec.dependencies[0].url"}),
    ({"name": "d", "url": "https://x.io", "endpoint": "api"}, {"spec.dependencies[0].url"}),
    ({"name": "d", "component": "C"}, {"spec.dependencies[0].component"}),
    ({"name": "d", "component": "c", "env": [{"from": "Password", "to": "X"}]}, {"spec.dependencies[0].env[0].from"}),
    ({"name": "d", "component": "c", "env": [{"from": "ServiceURL", "to": "1X"}]}, {"spec.dependencies[0].env[0].to"}),
    ({"name": "d", "component": "c", "env": [{"from": "ServiceURL", "to": "X"}, {"from": "APIKey", "to": "X"}]},
     {"spec.dependencies[0].env[1].to"}),
])
def test_dependency_problems(dependency: dict[str, Any], expected: set[str]) -> None:
    assert set(problems(component({"dependencies": [dependency]}))) == expected


@pytest.mark.parametrize("dependency", [
    {"name": "d", "component": "c"},
    {"name": "d", "component": "c", "project": "other", "endpoint": "api"},
    {"name": "d", "url": "https://api.example.com/v1"},
    {"name": "d", "url": "postgres://db:5432/x"},
])
def test_dependency_needs_exactly_one_of_component_or_url(dependency: dict[str, Any]) -> None:
    parse_document(component({"dependencies": [dependency]}))


def test_duplicate_dependency_names() -> None:
    found = problems(component({"dependencies": [{"name": "d", "component": "a"}, {"name": "d", "component": "b"}]}))
    assert found == {"spec.dependencies[1].name": "'d' is used more than once"}


# -- configuration ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["A", "_", "_A1", "log_level", "LOG_LEVEL", "a" * 200])
def test_valid_env_var_names(name: str) -> None:
    parse_document(component({"configuration": {"env": [{"name": name, "value": "v"}]}}))


@pytest.mark.parametrize("name", ["", "1A", "A-B", "A.B", "A B", "É", "$A", "A\n"])
def test_invalid_env_var_names(name: str) -> None:
    found = problems(component({"configuration": {"env": [{"name": name, "value": "v"}]}}))
    assert set(found) == {"spec.configuration.env[0].name"}
    assert "not a valid environment variable name" in found["spec.configuration.env[0].name"]


def test_duplicate_config_keys() -> None:
    found = problems(component({
        "configuration": {"env": [{"name": "A"}, {"name": "B"}, {"name": "A"}],
                          "files": [{"name": "f", "mountPath": "/etc/f"}, {"name": "f", "mountPath": "/etc/f"}]},
        "dependencies": [{"name": "d", "component": "c", "env": [{"from": "ServiceURL", "to": "B"}]}],
    }))
    assert found == {
        "spec.configuration.env[2].name": "'A' is used more than once",
        "spec.configuration.files[1].name": "'f' is used more than once",
        "spec.configuration.files[1].mountPath": "'/etc/f' is used more than once",
        "spec.dependencies[0].env[0].to": "'B' is also set in configuration.env",
    }


def test_config_file_mount_path_must_be_absolute() -> None:
    found = problems(component({"configuration": {"files": [{"name": "f", "mountPath": "etc/f"},
                                                            {"name": "g", "mountPath": "/etc/../g"}]}}))
    assert set(found) == {"spec.configuration.files[0].mountPath", "spec.configuration.files[1].mountPath"}


def test_per_environment_values_are_keyed_by_environment_names() -> None:
    doc = parse_document(component({"configuration": {"env": [{"name": "A", "environments": {"production": "1"}}],
                                                      "files": [{"name": "f", "mountPath": "/f",
                                                                 "environments": {"staging": "x"}}]}}))
    assert doc.spec.environment_names() == {"production", "staging"}  # type: ignore[attr-defined]
    found = problems(component({"configuration": {"env": [{"name": "A", "environments": {"Prod": "1"}}]}}))
    assert set(found) == {"spec.configuration.env[0].environments.Prod[key]"}


# -- resources, replicas, source, build ------------------------------------------------------------------------------


@pytest.mark.parametrize("cpu", ["500m", "1", "2", "1.5", "0.25", "1000m"])
def test_valid_cpu(cpu: str) -> None:
    parse_document(component({"resources": {"cpu": cpu}}))


@pytest.mark.parametrize("cpu", ["", "1.5m", "m", "-1", "1 cpu", "1e3", "500M"])
def test_invalid_cpu(cpu: str) -> None:
    found = problems(component({"resources": {"cpu": cpu}}))
    if cpu:
        assert found == {"spec.resources.cpu": f"'{cpu}' is not a CPU quantity (e.g. 500m, 1, 1.5)"}
    else:  # an empty string is no quantity either
        assert set(found) == {"spec.resources.cpu"}


@pytest.mark.parametrize("memory", ["256Mi", "1Gi", "512M", "1G", "1024", "64Ki", "1Ti"])
def test_valid_memory(memory: str) -> None:
    parse_document(component({"resources": {"memory": memory}}))


@pytest.mark.parametrize("memory", ["1.5Gi", "12XB", "Gi", "-1Gi", "1 Gi", "1gi"])
def test_invalid_memory(memory: str) -> None:
    assert problems(component({"resources": {"memory": memory}})) == {
        "spec.resources.memory": f"'{memory}' is not a memory quantity (e.g. 256Mi, 1Gi)"}


def test_replicas_and_scaling_bounds() -> None:
    assert set(problems(component({"replicas": -1}))) == {"spec.replicas"}
    assert set(problems(component({"replicas": 101}))) == {"spec.replicas"}
    assert set(problems(component({"scaling": {"minReplicas": 3, "maxReplicas": 2}}))) == {"spec.scaling.minReplicas"}
    assert set(problems(component({"scaling": {"maxReplicas": 0}}))) == {"spec.scaling.maxReplicas"}


def test_source_and_build_rules() -> None:
    assert set(problems(component({"source": {"path": "/abs"}}))) == {"spec.source.path"}
    assert set(problems(component({"source": {"path": "a/../../b"}}))) == {"spec.source.path"}
    assert set(problems(component({"build": {"mode": "procfile", "dockerfile": "Dockerfile"}}))) == {
        "spec.build.dockerfile"}
    assert set(problems(component({"build": {"mode": "magic"}}))) == {"spec.build.mode"}
    parse_document(component({"build": {"mode": "command", "run": "python app.py"}}))


# -- metadata: labels, scope -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("labels", [
    {"app": "orders"}, {"app.kubernetes.io/name": "orders"}, {"tier": ""}, {"a_b.c-d": "A_b.C-9"}, {"x": "v" * 63},
])
def test_valid_labels(labels: dict[str, str]) -> None:
    assert parse_document(raw("Project", "p", labels=labels)).metadata.labels == labels


@pytest.mark.parametrize("labels", [
    {"bad key": "v"}, {"-a": "v"}, {"a-": "v"}, {"UPPER.prefix/a": "v"}, {"": "v"}, {"k" * 254: "v"},
    {"a": "bad value"}, {"a": "-v"}, {"a": "v" * 64}, {"a": "v/w"},
])
def test_invalid_labels(labels: dict[str, str]) -> None:
    assert set(problems(raw("Project", "p", labels=labels))) == {"metadata.labels"}


def test_every_bad_label_is_named() -> None:
    problem = problems(raw("Project", "p", labels={"bad key!": "v", "ok": "bad value!", "fine": "yes"}))
    assert "'bad key!'" in problem["metadata.labels"] and "'bad value!'" in problem["metadata.labels"]
    assert "'fine'" not in problem["metadata.labels"]


@pytest.mark.parametrize("key", ["n" * 63, "example.com/" + "n" * 63, "p" * 253 + "/n", "a-b.c/X_y.Z-9"],
                         ids=["name-63", "prefixed-name-63", "prefix-253", "every-character"])
def test_label_keys_have_kubernetes_lengths(key: str) -> None:
    assert parse_document(raw("Project", "p", labels={key: "v"})).metadata.labels == {key: "v"}


@pytest.mark.parametrize("key", ["n" * 64, "example.com/" + "n" * 64, "p" * 254 + "/n", "Example.com/n", "a_b/n"],
                         ids=["name-64", "prefixed-name-64", "prefix-254", "upper-case-prefix", "underscore-in-prefix"])
def test_a_label_key_with_a_name_over_63_or_a_prefix_over_253_is_refused(key: str) -> None:
    problem = problems(raw("Project", "p", labels={key: "v"}))
    assert set(problem) == {"metadata.labels"} and "at most 63" in problem["metadata.labels"]


KiB = 1024


def test_annotations_may_take_256_kib_in_total_and_no_more() -> None:
    at_the_limit = {"a": "x" * (256 * KiB - 2), "b": ""}  # keys and values: 1 + (256 KiB - 2) + 1 + 0 bytes
    assert parse_document(raw("Project", "p", annotations=at_the_limit)).metadata.annotations == at_the_limit
    over = {**at_the_limit, "b": "y"}
    assert problems(raw("Project", "p", annotations=over)) == {"metadata.annotations": (
        f"annotations take {256 * KiB + 1} bytes (keys and values, UTF-8); at most {256 * KiB} (256 KiB) in total")}


def test_annotations_are_counted_in_utf_8_bytes() -> None:
    assert set(problems(raw("Project", "p", annotations={"a": "é" * (128 * KiB)}))) == {"metadata.annotations"}


def test_a_hundred_thousand_annotations_are_refused_in_every_kind() -> None:
    many = {f"note-{i}": "v" * 100 for i in range(100_000)}  # 11 MB, as the report stored
    for kind in KINDS:
        document = raw(kind, "x", annotations=many, **({"project": "shop"} if kind == "Component" else {}))
        assert set(problems(document)) == {"metadata.annotations"}, kind


def test_labels_are_bounded_in_total_too() -> None:
    labels = {f"{'p' * 250}{i:03d}/{'n' * 63}": "v" * 63 for i in range(700)}  # 700 valid labels of 380 bytes
    problem = problems(raw("Project", "p", labels=labels))["metadata.labels"]
    assert problem.startswith("labels take 266000 bytes")


def test_a_thousand_bad_labels_are_named_ten_at_a_time_and_cut() -> None:
    problem = problems(raw("Project", "p", labels={f"bad key {i} " + "k" * 200: "v" for i in range(1000)}))
    message = problem["metadata.labels"]
    assert message.count("is not valid") == 10 and message.endswith("and 990 more")
    assert "'bad key 0 " + "k" * 70 + "'... (210 characters)" in message and len(message) < 10 * 300


def test_labels_and_annotations_must_be_string_maps() -> None:
    assert set(problems(raw("Project", "p", labels={"a": 1}))) == {"metadata.labels.a"}
    assert set(problems(raw("Project", "p", annotations=["a"]))) == {"metadata.annotations"}
    assert parse_document(raw("Project", "p", annotations={"free text": "anything [at] all: 1"})).metadata.annotations


def test_scope_of_metadata() -> None:
    assert problems(raw("Project", "p", project="q")) == {"metadata.project": "a Project does not belong to a project"}
    assert problems(raw("Environment", "e", project="q")) == {
        "metadata.project": "a Environment does not belong to a project"}
    assert problems(raw("Organization", "o", organization="q")) == {
        "metadata.organization": "an Organization has no owning organization"}
    assert set(problems(raw("Component", "c", organization="Bad_Org"))) == {"metadata.organization"}


def test_other_kinds_cross_field_rules() -> None:
    found = problems(raw("DeploymentPipeline", "p", {"promotionPaths": [
        {"source": "dev", "targets": [{"name": "dev"}]}, {"source": "dev", "targets": [{"name": "prod"}]}]}))
    assert set(found) == {"spec.promotionPaths[0].targets[0].name", "spec.promotionPaths[1].source"}
    assert set(problems(raw("DeploymentPipeline", "p", {"promotionPaths": [{"source": "dev", "targets": []}]}))) == {
        "spec.promotionPaths[0].targets"}
    assert set(problems(raw("DataPlane", "d", {"type": "local", "kubernetes": {}}))) == {"spec.kubernetes"}
    assert set(problems(raw("DataPlane", "d", {"type": "nomad"}))) == {"spec.type"}
    assert set(problems(raw("Organization", "o", {"displayName": "x" * 201}))) == {"spec.displayName"}


# -- envelope: apiVersion, kind ------------------------------------------------------------------------------------


def test_api_version_errors() -> None:
    document = raw("Project", "p")
    del document["apiVersion"]
    assert problems(document) == {"apiVersion": f"required (use '{API_VERSION}')"}
    assert problems(raw("Project", "p") | {"apiVersion": "cellplane.dev/v1"}) == {
        "apiVersion": f"'cellplane.dev/v1' is not supported (use '{API_VERSION}')"}
    assert set(problems(raw("Project", "p") | {"apiVersion": 1})) == {"apiVersion"}


@pytest.mark.parametrize("kind", ["Widget", "project", "Projects", "", "component"])
def test_unknown_kind(kind: str) -> None:
    found = problems(raw(kind, "p"))
    assert found == {"kind": f"'{kind}' is not a kind; use one of {', '.join(KINDS)}"}


@pytest.mark.parametrize("kind", [None, 5, ["Project"], {"kind": "Project"}, True])
def test_kind_that_is_not_a_string(kind: Any) -> None:
    document = raw("Project", "p") | {"kind": kind}
    if kind is None:
        del document["kind"]
    assert set(problems(document)) == {"kind"}


def test_unknown_kind_still_reports_the_metadata() -> None:
    found = problems({"apiVersion": "v9", "kind": "Widget", "metadata": {"name": "Bad!"}, "spec": {"x": 1}})
    assert set(found) == {"apiVersion", "kind", "metadata.name"}


@pytest.mark.parametrize("document", [None, [], "kind: Project", 5, [raw("Project", "p")]])
def test_a_document_must_be_a_mapping(document: Any) -> None:
    with pytest.raises(InvalidError) as caught:
        parse_document(document)
    assert caught.value.message.startswith("a document must be a mapping")
    assert caught.value.details[0].problem.startswith("expected a mapping")


def test_unknown_top_level_keys() -> None:
    assert problems(raw("Project", "p") | {"specs": {}, "Kind": "x"}) == {"specs": "unknown field",
                                                                          "Kind": "unknown field"}


def test_spec_must_be_a_mapping() -> None:
    assert set(problems(raw("Project", "p", spec=["a"]))) == {"spec"}
    assert set(problems(raw("Component", "c", spec="service"))) == {"spec"}


def test_validate_spec_alone() -> None:
    spec, found = validate_spec("Component", {"endpoints": [{"name": "a", "port": 1}, {"name": "a", "port": 2}]})
    assert spec is not None
    assert [(p.field, p.problem) for p in found] == [("spec.endpoints[1].name", "'a' is used more than once")]
    spec, found = validate_spec("Project", {"deploymentPipeline": 5})
    assert spec is None and [p.field for p in found] == ["spec.deploymentPipeline"]


# -- kinds -----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("word", "kind"), [
    ("Component", "Component"), ("component", "Component"), ("components", "Component"), ("COMPONENTS", "Component"),
    ("env", "Environment"), ("envs", "Environment"), ("environment", "Environment"), ("Environments", "Environment"),
    ("org", "Organization"), ("orgs", "Organization"), ("organizations", "Organization"),
    ("project", "Project"), ("projects", "Project"),
    ("pipeline", "DeploymentPipeline"), ("pipelines", "DeploymentPipeline"),
    ("deploymentpipelines", "DeploymentPipeline"), ("DeploymentPipeline", "DeploymentPipeline"),
    ("dp", "DataPlane"), ("dataplane", "DataPlane"), ("dataplanes", "DataPlane"),
])
def test_kind_info_aliases(word: str, kind: str) -> None:
    info = kind_info(word)
    assert info is not None and info.kind == kind


@pytest.mark.parametrize("word", ["", "widget", "comp", "componentz", "users", "rolebindings"])
def test_kind_info_unknown(word: str) -> None:
    assert kind_info(word) is None


def test_kinds_have_consistent_scopes_and_apply_order() -> None:
    scopes = {k: info.scope for k, info in KINDS.items()}
    assert scopes == {"Organization": "cluster", "DataPlane": "organization", "Environment": "organization",
                      "DeploymentPipeline": "organization", "Project": "organization", "Component": "project"}
    order = sorted(KINDS.values(), key=lambda i: i.order)
    assert order[0].kind == "Organization" and order[-1].kind == "Component"
    assert all(info.singular == info.kind.lower() for info in KINDS.values())


def test_drop_none() -> None:
    assert drop_none({"a": None, "b": [{"c": None, "d": 1}], "e": {"f": None}}) == {"b": [{"d": 1}], "e": {}}


# -- property: whatever comes in, the only error is an InvalidError --------------------------------------------------

FIELD_NAMES = ["apiVersion", "kind", "metadata", "spec", "status", "name", "project", "organization", "labels",
               "annotations", "type", "endpoints", "port", "basePath", "visibility", "dependencies", "component",
               "endpoint", "url", "configuration", "env", "files", "schedule", "cron", "resources", "cpu", "memory",
               "proxy", "source", "build", "mode", "promotionPaths", "targets", "gateway", "kubernetes", "replicas",
               "scaling", "minReplicas", "maxReplicas", "from", "to", "mountPath", "content", "secret",
               "environments", "branch", "ref", "path", "dockerfile", "command", "run", "generation",
               "creationTimestamp", "dataPlane", "production"]
SCALARS = (st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | st.floats()
           | st.text(max_size=24)
           | st.sampled_from([API_VERSION, *KINDS, "service", "scheduled-task", "manual-task", "api-proxy", "REST",
                              "TCP", "Public", "ServiceURL", "* * * * *", "/", "/x", "500m", "1Gi", "a", "a-b", "A_B",
                              "2030-01-01T00:00:00Z", "https://x.io", "kubernetes", "dockerfile", "command"]))
KEYS = st.sampled_from(FIELD_NAMES) | st.text(max_size=10)
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=6),
                    max_leaves=40)
DOCUMENTS = st.fixed_dictionaries(
    {"apiVersion": st.just(API_VERSION) | SCALARS, "kind": st.sampled_from(list(KINDS)) | JSON,
     "metadata": JSON | st.fixed_dictionaries({"name": st.sampled_from(["a", "orders"]) | SCALARS},
                                              optional={"labels": JSON, "project": JSON, "organization": JSON}),
     "spec": JSON},
    optional={"status": JSON},
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(JSON | DOCUMENTS)
def test_parse_document_raises_nothing_but_invalid_error(document: Any) -> None:
    try:
        doc = parse_document(document)
    except CellplaneError as e:
        assert isinstance(e, InvalidError)
        assert e.status == 422
        assert all(isinstance(p.field, str) and isinstance(p.problem, str) for p in e.details)
        assert e.details, "an invalid document names at least one problem"
        return
    assert doc.kind in KINDS
    assert dns_label_problem(doc.name) is None
    doc.spec_dict()  # a valid document always serializes
