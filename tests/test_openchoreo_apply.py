"""A team's OpenChoreo YAML (tests/fixtures/openchoreo/shop: environments, a pipeline, a project, two components
with their workloads, one connected to the other) applied with the real ``cellplane apply -f`` to a live control
plane, and read back through the API; refusals in the API's error shape, at the paths as written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from buildkit import git_repo
from liveserver import LiveServer, doc, fails, ok, run_cli
from openchoreokit import error_of

SHOP = Path(__file__).parent / "fixtures" / "openchoreo" / "shop"
ORG = "acme-oc"


@pytest.fixture(scope="module")
def live_server(shared_live_server: LiveServer) -> LiveServer:
    """This module works in its own organization (acme-oc, and oc-errors): it shares the session's control plane."""
    return shared_live_server


@pytest.fixture(scope="module")
def applied(live_server: LiveServer) -> tuple[str, str]:
    """The shop applied once: the CLI's stdout and stderr."""
    admin = live_server.client()
    assert admin.post("/apply", json={"documents": [doc("Organization", ORG)]}).status_code == 200
    result = ok(run_cli(live_server, "apply", "-f", str(SHOP)))
    return result.stdout, result.stderr


def get(server: LiveServer, path: str) -> dict[str, Any]:
    r = server.client().get(path)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def test_every_document_is_applied_and_each_workload_as_part_of_its_component(applied: tuple[str, str]) -> None:
    stdout, _ = applied
    assert stdout.splitlines() == [
        "environment/development configured", "environment/qa created", "environment/live created",
        "deploymentpipeline/shop-pipeline created", "project/shop created", "component/catalog created",
        "component/storefront created"]


def test_what_has_no_equivalent_is_one_warning_line_each_naming_its_field(applied: tuple[str, str]) -> None:
    _, stderr = applied
    lines = stderr.splitlines()
    assert all(line.startswith("warning: ") for line in lines), lines
    fields = [line.removeprefix("warning: ").split(": ")[0] for line in lines]
    assert fields == [
        "spec.dataPlaneRef",
        "Workload 'catalog-workload' spec.container.image",
        "spec.workflow.parameters.buildEnv", "spec.traits[0]",
        "Workload 'storefront-workload' spec.container.image",
        "Workload 'storefront-workload' spec.container.env[0].valueFrom.secretKeyRef",
        "Workload 'storefront-workload' spec.endpoints.web.port"]


def test_the_platform_kinds_read_back_as_cellplanes(live_server: LiveServer, applied: tuple[str, str]) -> None:
    base = f"/organizations/{ORG}"
    live = get(live_server, f"{base}/environments/live")["spec"]
    assert live["production"] is True and live["displayName"] == "Live"
    assert get(live_server, f"{base}/environments/qa")["spec"]["description"] == "Integration tests run here"
    pipeline = get(live_server, f"{base}/deploymentpipelines/shop-pipeline")["spec"]
    assert [(p["source"], [t["name"] for t in p["targets"]]) for p in pipeline["promotionPaths"]] == [
        ("development", ["qa"]), ("qa", ["live"])]
    project = get(live_server, f"{base}/projects/shop")
    assert project["spec"]["deploymentPipeline"] == "shop-pipeline"
    assert project["spec"]["displayName"] == "Shop"
    assert project["metadata"]["labels"] == {"openchoreo.dev/name": "shop"}


def test_the_components_carry_their_workloads_endpoints_connection_and_configuration(
        live_server: LiveServer, applied: tuple[str, str]) -> None:
    base = f"/organizations/{ORG}/projects/shop/components"
    catalog = get(live_server, f"{base}/catalog")["spec"]
    assert catalog["type"] == "service" and catalog["replicas"] == 2
    assert catalog["source"] == {"repository": "https://git.example.com/acme/shop.git", "branch": "main",
                                 "path": "services/catalog"}
    assert catalog["build"]["mode"] == "dockerfile"
    assert catalog["tracks"] == [{"name": "main", "version": "1.0", "autoDeploy": True}]
    [endpoint] = catalog["endpoints"]
    assert (endpoint["name"], endpoint["port"], endpoint["type"], endpoint["basePath"], endpoint["visibility"]) == (
        "http", 8080, "REST", "/catalog", ["Project", "Organization"])
    assert [(e["name"], e.get("value")) for e in catalog["configuration"]["env"]] == [("LOG_LEVEL", "info")]

    storefront = get(live_server, f"{base}/storefront")["spec"]
    assert storefront["type"] == "web-app" and storefront["displayName"] == "Storefront"
    assert storefront["build"]["run"] == "node server.js"
    [web] = storefront["endpoints"]
    assert (web["port"], web["visibility"]) == (3000, ["Project", "Public"])
    [dependency] = storefront["dependencies"]
    assert (dependency["component"], dependency["endpoint"], dependency["env"]) == (
        "catalog", "http", [{"from": "ServiceURL", "to": "CATALOG_URL"}])
    [secret] = storefront["configuration"]["env"]
    assert secret["name"] == "SESSION_SECRET" and secret["secret"] is True and "value" not in secret


def test_applying_the_same_files_again_changes_nothing(live_server: LiveServer, applied: tuple[str, str]) -> None:
    result = ok(run_cli(live_server, "apply", "-f", str(SHOP)))
    assert {line.rsplit(" ", 1)[1] for line in result.stdout.splitlines()} == {"unchanged"}


def test_a_workload_whose_component_is_neither_applied_nor_stored_is_refused_at_its_owner(
        live_server: LiveServer) -> None:
    stray = {"apiVersion": "openchoreo.dev/v1alpha1", "kind": "Workload",
             "metadata": {"name": "ghost-workload", "namespace": ORG},
             "spec": {"owner": {"projectName": "shop", "componentName": "ghost"},
                      "container": {"image": "x"}, "endpots": {}}}
    error = error_of(live_server.client().post("/apply", json={"documents": [stray]}))
    assert error["details"] == [
        {"field": "documents[0].spec.endpots", "problem": "unknown field (did you mean 'endpoints'?)"}]
    del stray["spec"]["endpots"]
    error = error_of(live_server.client().post("/apply", json={"documents": [stray]}))
    assert error["details"] == [
        {"field": "documents[0].spec.owner.componentName", "problem": "no Component 'ghost' of project 'shop' in "
         "this apply or stored: apply the Workload together with its Component, or after it"}]


def test_a_workload_applied_alone_updates_its_stored_component(live_server: LiveServer,
                                                               applied: tuple[str, str]) -> None:
    """What an OpenChoreo build does: a new Workload for a Component that exists."""
    newer = {"apiVersion": "openchoreo.dev/v1alpha1", "kind": "Workload",
             "metadata": {"name": "catalog-workload", "namespace": ORG},
             "spec": {"owner": {"projectName": "shop", "componentName": "catalog"},
                      "container": {"image": "registry.example.com/acme/catalog:v1.5.0",
                                    "env": [{"key": "LOG_LEVEL", "value": "debug"}]},
                      "endpoints": {"http": {"type": "HTTP", "port": 8081, "basePath": "/catalog"}}}}
    r = live_server.client().post("/apply", json={"documents": [newer]})
    assert r.status_code == 200, r.text
    [result] = r.json()["results"]
    assert (result["document"], result["kind"], result["name"], result["action"]) == (
        0, "Component", "catalog", "configured")
    assert result["warnings"][0].startswith("Workload 'catalog-workload' spec.container.image: ")
    catalog = get(live_server, f"/organizations/{ORG}/projects/shop/components/catalog")["spec"]
    assert [(e["port"], e["visibility"]) for e in catalog["endpoints"]] == [(8081, ["Project"])]
    assert catalog["configuration"]["env"] == [{"name": "LOG_LEVEL", "value": "debug", "secret": False,
                                                "environments": {}}]
    assert catalog["replicas"] == 2 and catalog["build"]["mode"] == "dockerfile"  # the Component's, kept


def test_a_reference_refused_when_stored_is_reported_where_it_was_written(live_server: LiveServer,
                                                                         applied: tuple[str, str]) -> None:
    pipeline = {"apiVersion": "openchoreo.dev/v1alpha1", "kind": "DeploymentPipeline",
                "metadata": {"name": "broken", "namespace": ORG},
                "spec": {"promotionPaths": [{"sourceEnvironmentRef": {"name": "development"},
                                             "targetEnvironmentRefs": [{"name": "nowhere"}]}]}}
    error = error_of(live_server.client().post("/apply", json={"documents": [pipeline]}), None)
    [detail] = error["details"]
    assert detail["field"] == "documents[0].spec.promotionPaths[0].targetEnvironmentRefs[0].name"
    assert "nowhere" in detail["problem"]


def test_the_control_plane_reads_a_workload_yaml_from_a_git_repository_at_a_branch_and_path(
        live_server: LiveServer, applied: tuple[str, str], tmp_path: Path) -> None:
    """POST component-imports without files: the control plane checks the repository out and reads the
    descriptor in the component's directory, as OpenChoreo's build does at appPath."""
    tree = tmp_path / "shop"
    (tree / "services" / "reviews").mkdir(parents=True)
    (tree / "services" / "reviews" / "workload.yaml").write_text(
        "apiVersion: openchoreo.dev/v1alpha1\n"
        "endpoints:\n  - {name: grpc, type: gRPC, port: 50051, visibility: [namespace]}\n"
        "dependencies:\n  endpoints:\n"
        "    - {component: catalog, name: http, visibility: project, envBindings: {address: CATALOG_ADDR}}\n")
    repo = git_repo(tmp_path, tree, branch="trunk")
    r = live_server.client().post(f"/organizations/{ORG}/projects/shop/component-imports", json={
        "name": "reviews", "source": {"repository": f"file://{repo}", "branch": "trunk", "path": "services/reviews"}})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["descriptor"] == "workload.yaml" and body["warnings"] == []
    spec = body["component"]["spec"]
    assert spec["source"] == {"repository": f"file://{repo}", "branch": "trunk", "path": "services/reviews"}
    assert [(e["name"], e["type"], e["port"], e["visibility"]) for e in spec["endpoints"]] == [
        ("grpc", "gRPC", 50051, ["Project", "Organization"])]
    assert [(d["component"], d["endpoint"], d["env"]) for d in spec["dependencies"]] == [
        ("catalog", "http", [{"from": "ServiceURL", "to": "CATALOG_ADDR"}])]


def test_the_cli_names_the_file_and_the_openchoreo_path_of_a_problem_on_one_line(live_server: LiveServer,
                                                                                tmp_path: Path) -> None:
    bad = tmp_path / "orders.yaml"
    bad.write_text("apiVersion: openchoreo.dev/v1alpha1\nkind: Component\n"
                   f"metadata: {{name: orders, namespace: {ORG}}}\n"
                   "spec:\n  owner: {projectName: shop}\n  componentType: {name: deployment/service}\n"
                   "  workflow: {name: dockerfile-builder}\n  parameters: {replicas: many}\n")
    line = fails(run_cli(live_server, "apply", "-f", str(bad)))
    assert f"{bad}: spec.parameters.replicas" in line and "expected a number" in line
