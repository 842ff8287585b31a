"""OpenChoreo's ``openchoreo.dev/v1alpha1`` documents mapped onto Cellplane's, in process: one group per kind, then
the request-level rules (Workloads merged into Components, problems taken back to where they were written).

Every mapped document is also validated as a Cellplane document, so a mapping that produces something Cellplane
refuses fails here."""

from __future__ import annotations

from typing import Any

import pytest

from cellplane.errors import FieldProblem, InvalidError
from cellplane.model import parse_document
from cellplane.openchoreo import Translation, is_openchoreo, translate
from openchoreokit import OC, component, oc, workload


def one(*raws: Any) -> tuple[dict[str, Any], list[str]]:
    """The single mapped document of ``raws`` (after merging), validated as Cellplane's, and its warnings."""
    t = translate(list(raws))
    assert t.problems == [], t.problems
    assert len(t.documents) == 1, t.documents
    index, document = t.documents[0]
    parse_document(document)
    return document, t.warnings(index)


def problems(*raws: Any) -> list[FieldProblem]:
    t = translate(list(raws))
    assert t.problems, f"expected problems, got {t.documents}"
    return t.problems


def validated(t: Translation) -> list[FieldProblem]:
    """Problems the mapped documents have as Cellplane documents, where their values were written."""
    out = list(t.problems)
    for i, document in t.documents:
        try:
            parse_document(document)
        except InvalidError as e:
            out += t.locate(i, e)
    return out


# -- recognising documents ------------------------------------------------------------------------------------------


def test_only_documents_of_the_openchoreo_group_are_mapped_and_the_rest_pass_through_untouched() -> None:
    mine = {"apiVersion": "cellplane.dev/v1alpha1", "kind": "Project", "metadata": {"name": "p"}, "spec": {}}
    t = translate([mine, "not a mapping", oc("Project", "q")])
    assert t.documents[0] == (0, mine) and t.documents[1] == (1, "not a mapping")
    assert t.documents[2][1]["apiVersion"] == "cellplane.dev/v1alpha1"
    assert is_openchoreo(oc("Project", "q")) and not is_openchoreo(mine) and not is_openchoreo(None)


def test_another_version_of_the_openchoreo_group_is_refused_at_apiVersion() -> None:
    raw = {**oc("Project", "q"), "apiVersion": "openchoreo.dev/v1beta1"}
    assert problems(raw) == [FieldProblem("documents[0].apiVersion", "'openchoreo.dev/v1beta1' is not supported "
                                          "(OpenChoreo documents: 'openchoreo.dev/v1alpha1')")]


def test_a_kind_without_an_equivalent_is_one_note_naming_what_to_do_instead_and_makes_nothing() -> None:
    t = translate([oc("WorkflowRun", "build-1"), oc("Project", "q")])
    assert t.problems == [] and [i for i, _ in t.documents] == [1]
    assert t.notes() == ["documents[0]: WorkflowRun 'build-1' has no equivalent in Cellplane; not applied (start a "
                         "build with `cellplane build COMPONENT`)"]


def test_a_kind_openchoreo_does_not_have_is_refused_with_a_hint() -> None:
    [p] = problems(oc("Enviroment", "dev"))
    assert p.field == "documents[0].kind"
    assert p.problem.startswith("'Enviroment' is not an OpenChoreo kind (did you mean 'Environment'?)")


def test_unknown_fields_are_errors_with_a_hint_and_status_is_ignored() -> None:
    raw = {**oc("Project", "q", {"deploymentPipelinRef": {"name": "x"}}), "status": {"conditions": []}}
    assert problems(raw) == [FieldProblem("documents[0].spec.deploymentPipelinRef",
                                          "unknown field (did you mean 'deploymentPipelineRef'?)")]


# -- metadata -------------------------------------------------------------------------------------------------------


def test_the_namespace_becomes_the_organization_and_display_annotations_become_spec_fields() -> None:
    raw = oc("Project", "shop", labels={"team": "a"}, uid="x", resourceVersion="7",
             annotations={"openchoreo.dev/display-name": "Shop", "openchoreo.dev/description": "Sells"})
    document, warnings = one(raw)
    assert document["metadata"] == {"name": "shop", "organization": "acme", "labels": {"team": "a"},
                                    "annotations": raw["metadata"]["annotations"]}
    assert document["spec"]["displayName"] == "Shop" and document["spec"]["description"] == "Sells"
    assert warnings == []


def test_missing_or_malformed_metadata_is_one_problem() -> None:
    assert problems({"apiVersion": OC, "kind": "Project"}) == [FieldProblem("documents[0].metadata", "required")]
    assert problems({**oc("Project", "p"), "metadata": "p"}) == [
        FieldProblem("documents[0].metadata", "expected a mapping, got a string")]
    assert problems(oc("Project", "")) == [FieldProblem("documents[0].metadata.name", "required")]


def test_finalizers_have_no_equivalent_and_warn() -> None:
    _, warnings = one(oc("Project", "shop", finalizers=["openchoreo.dev/cleanup"]))
    assert warnings == ["metadata.finalizers: no equivalent in Cellplane; ignored"]


def test_a_bad_name_is_reported_at_metadata_name_by_cellplanes_validation() -> None:
    out = validated(translate([oc("Project", "Bad_Name")]))
    assert [p.field for p in out] == ["documents[0].metadata.name"]


# -- platform kinds -------------------------------------------------------------------------------------------------


def test_a_project_names_its_pipeline_and_a_default_project_type_says_nothing() -> None:
    document, warnings = one(oc("Project", "shop", {"deploymentPipelineRef": {"name": "fast"},
                                                    "type": {"kind": "ClusterProjectType", "name": "default"}}))
    assert document["spec"] == {"deploymentPipeline": "fast"}
    assert warnings == []


def test_a_project_type_of_its_own_and_its_parameters_warn() -> None:
    _, warnings = one(oc("Project", "shop", {"type": {"name": "regulated"}, "parameters": {"tier": "gold"}}))
    assert [w.split(":")[0] for w in warnings] == ["spec.type", "spec.parameters.tier"]


def test_an_environment_maps_production_and_a_namespaced_data_plane() -> None:
    document, warnings = one(oc("Environment", "prod", {"isProduction": True,
                                                        "dataPlaneRef": {"kind": "DataPlane", "name": "eu"}}))
    assert document["spec"] == {"production": True, "dataPlane": "eu"}
    assert warnings == []


def test_an_environment_on_a_cluster_data_plane_runs_on_the_default_one_with_a_warning() -> None:
    document, warnings = one(oc("Environment", "dev", {"dataPlaneRef": {"kind": "ClusterDataPlane",
                                                                        "name": "default"},
                                                       "gateway": {"ingress": {}}}))
    assert document["spec"] == {}
    assert [w.split(":")[0] for w in warnings] == ["spec.dataPlaneRef", "spec.gateway"]


def test_a_pipeline_maps_each_promotion_path_and_the_older_approval_flag() -> None:
    document, _ = one(oc("DeploymentPipeline", "default", {"promotionPaths": [
        {"sourceEnvironmentRef": {"name": "development"}, "targetEnvironmentRefs": [{"name": "staging"}]},
        {"sourceEnvironmentRef": {"kind": "Environment", "name": "staging"},
         "targetEnvironmentRefs": [{"name": "production", "requiresApproval": True}]}]}))
    assert document["spec"]["promotionPaths"] == [
        {"source": "development", "targets": [{"name": "staging"}]},
        {"source": "staging", "targets": [{"name": "production", "requiresApproval": True}]}]


def test_a_pipeline_problem_found_by_cellplane_is_reported_at_the_openchoreo_path() -> None:
    t = translate([oc("DeploymentPipeline", "loop", {"promotionPaths": [
        {"sourceEnvironmentRef": {"name": "dev"}, "targetEnvironmentRefs": [{"name": "dev"}]}]})])
    assert validated(t) == [FieldProblem("documents[0].spec.promotionPaths[0].targetEnvironmentRefs[0].name",
                                         "an environment cannot promote to itself")]


def test_a_data_plane_becomes_a_kubernetes_one_with_its_gateway_hosts_as_urls() -> None:
    document, warnings = one(oc("DataPlane", "eu", {"planeID": "eu-1", "gateway": {"ingress": {
        "external": {"name": "gw", "namespace": "x", "https": {"host": "apps.example.com", "port": 443}},
        "internal": {"http": {"host": "internal.example.com", "port": 8080}}}}}))
    assert document["spec"] == {"type": "kubernetes", "gateway": {"externalUrl": "https://apps.example.com",
                                                                  "internalUrl": "http://internal.example.com:8080"}}
    assert [w.split(":")[0] for w in warnings] == ["spec.planeID", "spec.gateway.ingress.external.name",
                                                   "spec.gateway.ingress.external.namespace",
                                                   "DataPlane 'eu' runs deployments once its agent registers"]
    assert "`cellplane dataplane token --name eu --output FILE`" in warnings[-1]


def test_an_organization_of_older_releases_is_cluster_scoped() -> None:
    document, warnings = one({**oc("Organization", "acme"), "metadata": {"name": "acme", "namespace": "x"}})
    assert document["metadata"] == {"name": "acme"} and document["kind"] == "Organization"
    assert warnings == ["metadata.namespace: ignored: this kind is not namespaced"]


# -- components -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("type_name", "expected"), [
    ("deployment/service", "service"), ("deployment/web-application", "web-app"), ("deployment/webapp", "web-app"),
    ("deployment/worker", "worker"), ("job/manual-task", "manual-task"), ("statefulset/service", "service")])
def test_the_component_type_maps_onto_cellplanes(type_name: str, expected: str) -> None:
    document, _ = one(component(componentType={"name": type_name}))
    assert document["spec"]["type"] == expected
    assert document["metadata"]["project"] == "shop"


def test_a_cronjob_takes_its_schedule_from_the_parameters() -> None:
    document, warnings = one(component(componentType={"name": "cronjob/scheduled-task"}, parameters={
        "schedule": "*/5 * * * *", "timeZone": "Europe/Berlin", "concurrencyPolicy": "Allow", "backoffLimit": 3}))
    assert document["spec"]["type"] == "scheduled-task"
    assert document["spec"]["schedule"] == {"cron": "*/5 * * * *", "timezone": "Europe/Berlin",
                                            "concurrencyPolicy": "Allow"}
    assert [w.split(":")[0] for w in warnings] == ["spec.parameters.backoffLimit", "spec"]


def test_a_cronjob_without_a_schedule_is_refused_saying_where_to_give_it() -> None:
    [p] = problems(component(componentType={"name": "cronjob/scheduled-task"}))
    assert p.field == "documents[0].spec.parameters.schedule" and "ReleaseBinding" in p.problem


def test_a_bad_cron_is_reported_at_the_parameter() -> None:
    t = translate([component(componentType={"name": "cronjob/x"}, parameters={"schedule": "every minute"})])
    assert [p.field for p in validated(t)] == ["documents[0].spec.parameters.schedule"]


def test_a_proxy_component_and_a_malformed_type_are_refused() -> None:
    assert [p.field for p in problems(component(componentType={"name": "proxy/api"}))] == [
        "documents[0].spec.componentType.name"]
    assert [p.field for p in problems(component(componentType={"name": "service"}))] == [
        "documents[0].spec.componentType.name"]


def test_the_build_workflow_gives_source_build_mode_dockerfile_and_an_auto_deployed_track() -> None:
    document, warnings = one(component(autoDeploy=True, autoBuild=True, workflow={
        "kind": "ClusterWorkflow", "name": "dockerfile-builder", "parameters": {
            "repository": {"url": "https://git.example.com/shop.git", "revision": {"branch": "main"},
                           "appPath": "/services/orders"},
            "docker": {"context": "/services/orders", "filePath": "/services/orders/build/Dockerfile"}}}))
    spec = document["spec"]
    assert spec["source"] == {"repository": "https://git.example.com/shop.git", "branch": "main",
                              "path": "services/orders"}
    assert spec["build"] == {"mode": "dockerfile", "dockerfile": "build/Dockerfile", "autoBuild": True}
    assert spec["tracks"] == [{"name": "main", "autoDeploy": True}]
    assert warnings == []


def test_a_buildpack_workflow_builds_in_auto_mode_and_its_build_env_warns() -> None:
    document, warnings = one(component(workflow={"name": "paketo-buildpacks-builder", "parameters": {
        "repository": {"url": "https://git.example.com/web.git", "revision": {"commit": "abc123"}},
        "buildEnv": [{"name": "BP_NODE_RUN_SCRIPTS", "value": "build"}]}}))
    assert document["spec"]["source"] == {"repository": "https://git.example.com/web.git", "ref": "abc123"}
    assert "build" not in document["spec"]
    assert [w.split(":")[0] for w in warnings] == ["spec.workflow.parameters.buildEnv"]


def test_parameters_and_traits_without_an_equivalent_warn_and_replicas_and_limits_map() -> None:
    document, warnings = one(component(
        workflow={"name": "gcp-buildpacks-builder"},
        parameters={"replicas": 2, "resources": {"limits": {"cpu": "500m", "memory": "256Mi"},
                                                 "requests": {"cpu": "100m"}}, "imagePullPolicy": "Always"},
        traits=[{"name": "alert-rule", "instanceName": "cpu"}]))
    assert document["spec"]["replicas"] == 2
    assert document["spec"]["resources"] == {"cpu": "500m", "memory": "256Mi"}
    assert [w.split(":")[0] for w in warnings] == ["spec.parameters.resources.requests",
                                                   "spec.parameters.imagePullPolicy", "spec.traits[0]"]


def test_a_component_without_an_owner_or_type_is_refused_at_each_path() -> None:
    raw = oc("Component", "orders", {"workflow": {"name": "x"}})
    assert sorted(p.field for p in problems(raw)) == ["documents[0].spec.componentType", "documents[0].spec.owner"]


# -- workloads ------------------------------------------------------------------------------------------------------


def test_a_workload_becomes_part_of_its_components_spec() -> None:
    document, warnings = one(component(workflow={"name": "gcp-buildpacks-builder"}), workload(
        endpoints={"api": {"type": "HTTP", "port": 80, "targetPort": 8080, "basePath": "/orders",
                           "displayName": "Orders API", "visibility": ["external", "namespace"]},
                   "grpc": {"type": "gRPC", "port": 9090}},
        dependencies={"endpoints": [{"component": "stock", "name": "api", "visibility": "project",
                                     "envBindings": {"address": "STOCK_URL", "host": "STOCK_HOST"}}],
                      "resources": [{"ref": "db", "envBindings": {"dsn": "DB_DSN"}}]},
        container={"image": "ghcr.io/acme/orders:1", "command": ["./orders"], "args": ["--port", 8080],
                   "env": [{"key": "LOG_LEVEL", "value": "info"},
                           {"key": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "gh", "key": "token"}}}],
                   "files": [{"key": "app.toml", "mountPath": "/etc/orders", "value": "debug = false\n"}]}))
    spec = document["spec"]
    assert spec["endpoints"] == [
        {"name": "api", "port": 8080, "type": "REST", "displayName": "Orders API", "basePath": "/orders",
         "visibility": ["Project", "Public", "Organization"]},
        {"name": "grpc", "port": 9090, "type": "gRPC", "visibility": ["Project"]}]
    assert spec["dependencies"] == [{"name": "stock", "component": "stock", "endpoint": "api",
                                     "env": [{"from": "ServiceURL", "to": "STOCK_URL"}]}]
    assert spec["configuration"] == {
        "env": [{"name": "LOG_LEVEL", "value": "info"}, {"name": "TOKEN", "secret": True}],
        "files": [{"name": "app-toml", "mountPath": "/etc/orders/app.toml", "content": "debug = false\n"}]}
    assert spec["build"] == {"run": "./orders --port 8080"}
    assert [w.split(":")[0] for w in warnings] == [
        "Workload 'orders-workload' spec.container.image", "Workload 'orders-workload' spec.container.env[1]"
        ".valueFrom.secretKeyRef", "Workload 'orders-workload' spec.endpoints.api.port",
        "Workload 'orders-workload' spec.dependencies.endpoints[0].envBindings.host",
        "Workload 'orders-workload' spec.dependencies.resources[0]"]


def test_a_workload_without_its_component_in_the_request_waits_for_the_stored_one() -> None:
    t = translate([workload("orders", endpoints={"api": {"type": "HTTP", "port": 8080}})])
    assert t.problems == [] and t.documents == []
    [pending] = t.pending
    assert (pending.index, pending.organization, pending.project, pending.component) == (0, "acme", "shop", "orders")
    stored = {"apiVersion": "cellplane.dev/v1alpha1", "kind": "Component",
              "metadata": {"name": "orders", "organization": "acme", "project": "shop", "uid": "u-1"},
              "spec": {"type": "service", "source": {"repository": "https://git.example.com/o.git"},
                       "endpoints": [{"name": "old", "port": 1}]},
              "status": {"latestBuild": None}}
    t.with_workload(pending, stored)
    [(index, document)] = t.documents
    assert index == 0 and "status" not in document
    assert document["spec"]["source"] == stored["spec"]["source"]
    assert [e["name"] for e in document["spec"]["endpoints"]] == ["api"]
    assert stored["spec"]["endpoints"] == [{"name": "old", "port": 1}]  # the stored document is left as it was
    parse_document(document)


def test_a_workload_whose_component_is_neither_in_the_request_nor_stored_is_refused_at_its_owner() -> None:
    t = translate([workload("orders")])
    t.with_workload(t.pending[0], None)
    [p] = t.problems
    assert p.field == "documents[0].spec.owner.componentName" and "in this apply or stored" in p.problem


def test_two_workloads_for_one_component_are_refused_at_the_second() -> None:
    out = problems(component(), workload(), workload())
    assert [p.field for p in out] == ["documents[2].spec.owner.componentName"]


def test_a_workload_problem_found_by_cellplane_is_reported_in_the_workload_document() -> None:
    t = translate([component(), workload(container={"image": "x", "env": [{"key": "1BAD", "value": "v"}]},
                                         endpoints={"Web_UI": {"type": "HTTP", "port": 8080}})])
    assert sorted(p.field for p in validated(t)) == ["documents[1].spec.container.env[0].key",
                                                     "documents[1].spec.endpoints.Web_UI"]


def test_endpoints_on_a_task_are_reported_in_the_workload_that_declares_them() -> None:
    t = translate([component(componentType={"name": "job/migrate"}), workload(endpoints={
        "api": {"type": "HTTP", "port": 8080}})])
    assert [p.field for p in validated(t)] == ["documents[1].spec.endpoints"]


@pytest.mark.parametrize(("endpoint", "field"), [
    ({"type": "SOAP", "port": 1}, "type"), ({"type": "HTTP", "port": 0}, "port"), ({"type": "HTTP"}, "port"),
    ({"type": "HTTP", "port": 80, "visibility": ["world"]}, "visibility[0]"),
    ({"type": "HTTP", "port": 80, "basepath": "/"}, "basepath")])
def test_a_bad_endpoint_is_refused_at_its_field(endpoint: dict[str, Any], field: str) -> None:
    out = problems(component(), workload(endpoints={"api": endpoint}))
    assert [p.field for p in out] == [f"documents[1].spec.endpoints.api.{field}"]


def test_a_connection_needs_its_component_endpoint_and_a_known_visibility() -> None:
    out = problems(component(), workload(dependencies={"endpoints": [{"name": "api", "visibility": "public",
                                                                      "envBindings": {}}]}))
    assert sorted(p.field for p in out) == ["documents[1].spec.dependencies.endpoints[0].component",
                                            "documents[1].spec.dependencies.endpoints[0].visibility"]


def test_a_tcp_endpoints_base_path_and_an_inline_schema_warn() -> None:
    _, warnings = one(component(), workload(endpoints={
        "db": {"type": "TCP", "port": 5432, "basePath": "/x"},
        "api": {"type": "HTTP", "port": 80, "schema": {"type": "openapi", "content": "openapi: 3.0.0"}}}))
    assert [w.split(": ")[0] for w in warnings[2:]] == ["Workload 'orders-workload' spec.endpoints.db.basePath",
                                                        "Workload 'orders-workload' spec.endpoints.api.schema"]
