"""OpenChoreo's workload descriptor (a repository's ``workload.yaml``) read as a partial Component spec, in process;
and which descriptor a source's files give when it carries Choreo's too."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cellplane.errors import FieldProblem, InvalidError
from cellplane.model.document import validate_spec
from cellplane.openchoreo.descriptor import import_workload_yaml
from cellplane.openchoreo.repository import import_source, import_source_directory, read_source_descriptors

DESCRIPTOR = """\
apiVersion: openchoreo.dev/v1alpha1
metadata:
  name: greeter
endpoints:
  - name: http
    displayName: Greeter API
    type: HTTP
    port: 8080
    basePath: /greeter
    schemaFile: ./openapi.yaml
    visibility: [project, external]
dependencies:
  endpoints:
    - component: quotes
      name: http
      visibility: project
      envBindings:
        address: QUOTES_URL
configurations:
  env:
    - name: GREETING
      value: hello
    - name: API_TOKEN
      valueFrom:
        secretKeyRef: {name: greeter-secrets, key: token}
  files:
    - name: settings.json
      mountPath: /etc/greeter
      value: '{"debug": false}'
"""


def problems_of(text: str) -> list[FieldProblem]:
    with pytest.raises(InvalidError) as caught:
        import_workload_yaml(text)
    return caught.value.details


def test_a_descriptor_gives_endpoints_a_connection_env_and_files() -> None:
    result = import_workload_yaml(DESCRIPTOR)
    assert result.descriptor == "workload.yaml"
    assert result.spec == {
        "endpoints": [{"name": "http", "port": 8080, "type": "REST", "displayName": "Greeter API",
                       "basePath": "/greeter", "visibility": ["Project", "Public"], "contract": "openapi.yaml"}],
        "dependencies": [{"name": "quotes", "component": "quotes", "endpoint": "http",
                          "env": [{"from": "ServiceURL", "to": "QUOTES_URL"}]}],
        "configuration": {"env": [{"name": "GREETING", "value": "hello"}, {"name": "API_TOKEN", "secret": True}],
                          "files": [{"name": "settings-json", "mountPath": "/etc/greeter/settings.json",
                                     "content": '{"debug": false}'}]}}
    assert validate_spec("Component", result.spec)[1] == []
    assert [w.split(": ")[1] for w in result.warnings] == ["metadata.name",
                                                           "configurations.env[1].valueFrom.secretKeyRef"]
    assert all(w.startswith("workload.yaml: ") for w in result.warnings)


def test_unknown_keys_warn_as_openchoreo_ignores_them() -> None:
    result = import_workload_yaml("endpoints:\n  - {name: web, type: HTTP, port: 80, visibilty: [external]}\n"
                                  "connections: []\n")
    assert result.spec["endpoints"][0]["visibility"] == ["Project"]
    assert result.warnings == [
        "workload.yaml: connections: the draft descriptor's spelling is not read: declare connections as "
        "dependencies.endpoints[] {component, name, visibility, envBindings}",
        "workload.yaml: endpoints[0].visibilty: unknown field, ignored (did you mean 'visibility'?)"]


def test_every_problem_of_the_file_is_listed_at_its_key_path() -> None:
    out = problems_of("endpoints:\n  - {type: SOAP, port: 70000}\n  - {name: ok, type: HTTP}\n"
                      "configurations:\n  env: {A: b}\n")
    assert out == [FieldProblem("workload.yaml: endpoints[0].name", "required"),
                   FieldProblem("workload.yaml: endpoints[0].type",
                                "'SOAP' is not one of HTTP, GraphQL, Websocket, gRPC, TCP, UDP"),
                   FieldProblem("workload.yaml: endpoints[0].port", "70000 is not a port (1-65535)"),
                   FieldProblem("workload.yaml: endpoints[1].port", "required"),
                   FieldProblem("workload.yaml: configurations.env", "expected a list, got a mapping")]


def test_a_value_cellplane_refuses_is_reported_where_it_was_written() -> None:
    out = problems_of("endpoints:\n  - {name: Web_UI, type: HTTP, port: 80}\n"
                      "configurations:\n  env:\n    - {name: 9LIVES, value: x}\n")
    assert [p.field for p in out] == ["workload.yaml: endpoints[0].name", "workload.yaml: configurations.env[0].name"]


def test_yaml_that_does_not_parse_and_a_top_level_list_are_refused() -> None:
    assert problems_of("endpoints: [\n")[0].field.startswith("workload.yaml: line ")
    assert problems_of("- a\n") == [FieldProblem("workload.yaml", "expected a mapping at the top level, got a list")]


def test_an_empty_descriptor_imports_nothing_with_a_warning() -> None:
    result = import_workload_yaml("")
    assert result.spec == {} and result.warnings == ["workload.yaml: the file is empty, nothing to import"]


def test_choreos_descriptor_is_preferred_and_the_workload_yaml_then_ignored() -> None:
    files = {".choreo/component.yaml": "schemaVersion: 1.2\nendpoints:\n  - name: api\n    service: {port: 9090}\n",
             "workload.yaml": DESCRIPTOR}
    result = import_source(files)
    assert result.descriptor == ".choreo/component.yaml"
    assert result.warnings[-1] == "workload.yaml: ignored, .choreo/component.yaml takes precedence"
    assert import_source({"workload.yaml": DESCRIPTOR}).descriptor == "workload.yaml"
    assert import_source({}).descriptor is None


def test_a_source_directory_is_read_with_the_same_care_as_choreos_descriptors(tmp_path: Path) -> None:
    (tmp_path / "workload.yaml").write_text(DESCRIPTOR)
    assert read_source_descriptors(tmp_path) == {"workload.yaml": DESCRIPTOR}
    assert import_source_directory(tmp_path).spec["endpoints"][0]["name"] == "http"
    outside = tmp_path.parent / f"{tmp_path.name}-outside.yaml"
    outside.write_text(DESCRIPTOR)
    (tmp_path / "workload.yaml").unlink()
    os.symlink(outside, tmp_path / "workload.yaml")
    assert read_source_descriptors(tmp_path) == {}
    with pytest.raises(InvalidError) as caught:
        import_source_directory(tmp_path)
    assert caught.value.details == [FieldProblem("workload.yaml", "is a symlink pointing outside the repository")]
