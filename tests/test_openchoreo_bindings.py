"""OpenChoreo's ReleaseBinding, SecretReference and the kinds Cellplane has no equivalent for, applied with the real
``cellplane apply -f`` (tests/fixtures/openchoreo/release) to a control plane that builds: a binding deploys the
component's build, or promotes what runs in the environment before it, through the same functions as ``cellplane
deploy`` and ``promote``; what cannot be bound refuses the whole apply; the rest is one warning line each."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from buildkit import APPS, BuildServer, failed_why, upload, wait
from liveserver import LiveServer, doc, fails, ok, run_cli
from openchoreokit import error_of, oc

RELEASE = Path(__file__).parent / "fixtures" / "openchoreo" / "release"
BINDINGS = RELEASE / "bindings"
SITE = "/organizations/default/projects/ocrel/components/site"


@pytest.fixture(scope="module")
def server(build_server: BuildServer) -> LiveServer:
    return build_server.server


@pytest.fixture(scope="module")
def applied(server: LiveServer) -> tuple[str, str]:
    """The platform and the extras applied once, before any build: the CLI's stdout and stderr."""
    result = ok(run_cli(server, "apply", "-f", str(RELEASE / "platform.yaml"), "-f", str(RELEASE / "extras.yaml")))
    return result.stdout, result.stderr


@pytest.fixture(scope="module")
def built(server: LiveServer, applied: tuple[str, str]) -> dict[str, Any]:
    """One build of the site (a static site, uploaded)."""
    c = server.client()
    info = wait(c, upload(c, "ocrel", "site", APPS / "static-site"))
    assert info["state"] == "succeeded", failed_why(c, info)
    return info


def deployments(server: LiveServer) -> dict[str, dict[str, Any]]:
    r = server.client().get(f"{SITE}/deployments")
    assert r.status_code == 200, r.text
    return {d["environment"]: d for d in r.json()["items"]}


def test_kinds_without_an_equivalent_are_one_warning_line_each_and_apply_nothing(applied: tuple[str, str]) -> None:
    stdout, stderr = applied
    assert stdout.splitlines() == [
        "dataplane/oc-plane created", "environment/oc-dev created", "environment/oc-qa created",
        "environment/oc-live created", "deploymentpipeline/oc-pipeline created", "project/ocrel created",
        "component/site created"]
    lines = stderr.splitlines()
    assert all(line.startswith("warning: ") for line in lines), lines
    extras = [line for line in lines if "extras.yaml" in line]
    assert len(extras) == 4, extras
    assert extras[0].endswith("extras.yaml (document 1): ComponentType 'web-application' has no equivalent in "
                              "Cellplane; not applied (Cellplane's component types are built in (spec.type: service, "
                              "web-app, worker, scheduled-task, manual-task, api-proxy))")
    assert "Trait 'api-management' has no equivalent" in extras[1]
    assert "WorkflowRun 'site-build-1' has no equivalent" in extras[2] and "`cellplane build COMPONENT`" in extras[2]
    assert "SecretReference 'site-secrets': its values (SESSION_KEY, API_TOKEN) are in an external store" in extras[3]
    assert "`cellplane config set COMPONENT SESSION_KEY=- --secret`" in extras[3]


def test_a_dataplane_says_how_its_agent_registers(applied: tuple[str, str]) -> None:
    _, stderr = applied
    [hint] = [line for line in stderr.splitlines() if "DataPlane 'oc-plane'" in line]
    assert "`cellplane dataplane token --name oc-plane --output FILE`" in hint


def test_a_binding_without_a_build_refuses_the_whole_apply_naming_its_file(server: LiveServer,
                                                                          applied: tuple[str, str],
                                                                          tmp_path: Path) -> None:
    extra = tmp_path / "project.yaml"
    extra.write_text("apiVersion: openchoreo.dev/v1alpha1\nkind: Project\nmetadata: {name: ocrel-two, "
                     "namespace: default}\nspec: {deploymentPipelineRef: {name: oc-pipeline}}\n")
    line = fails(run_cli(server, "apply", "-f", str(extra), "-f", str(BINDINGS / "dev.yaml")))
    assert "ReleaseBinding 'site-oc-dev': component 'ocrel/site' has no succeeded build to deploy" in line
    assert line.endswith(f"; nothing was applied: {BINDINGS / 'dev.yaml'}: this binding")
    assert server.client().get("/organizations/default/projects/ocrel-two").status_code == 404


def test_a_binding_deploys_the_latest_build_and_the_next_ones_promote_it(server: LiveServer,
                                                                        built: dict[str, Any]) -> None:
    dry = ok(run_cli(server, "apply", "-f", str(BINDINGS / "dev.yaml"), "--dry-run"))
    assert dry.stdout.startswith("releasebinding/site-oc-dev deployed (to oc-dev: release ")
    assert deployments(server) == {}
    result = ok(run_cli(server, "apply", "-f", str(BINDINGS / "dev.yaml")))
    [line] = result.stdout.splitlines()
    assert line.startswith("releasebinding/site-oc-dev deployed (to oc-dev: release ")
    assert "spec.releaseName: OpenChoreo's release 'site-20260101-1' does not carry over" in result.stderr
    dev = deployments(server)["oc-dev"]
    assert dev["build"]["id"] == built["id"]

    result = ok(run_cli(server, "apply", "-f", str(BINDINGS / "qa.yaml")))
    qa_line, live_line = result.stdout.splitlines()
    assert qa_line.startswith("releasebinding/site-oc-qa promoted (from oc-dev to oc-qa: release ")
    assert qa_line.endswith("; LOG_LEVEL set in oc-qa)")  # its workloadOverrides, as config set --env sets them
    assert live_line.startswith("releasebinding/site-oc-live pending (from oc-qa to oc-live: release ")
    assert "waits for approval" in live_line
    assert "workloadOverrides" not in result.stderr
    config = server.client().get(f"{SITE}/config", params={"env": "oc-qa"}).json()["items"]
    assert [(i["key"], i["value"], i["environment"]) for i in config] == [("LOG_LEVEL", "debug", "oc-qa")]
    assert server.client().get(f"{SITE}/config", params={"env": "oc-dev"}).json()["items"] == []
    now = deployments(server)
    assert set(now) == {"oc-dev", "oc-qa"}  # oc-live waits for its approval
    assert now["oc-qa"]["artifact"] == now["oc-dev"]["artifact"]  # build once, deploy many

    again = ok(run_cli(server, "apply", "-f", str(BINDINGS / "dev.yaml")))
    assert again.stdout.startswith("releasebinding/site-oc-dev unchanged (to oc-dev: release ")


def test_an_undeploy_binding_removes_the_deployment(server: LiveServer, built: dict[str, Any],
                                                   tmp_path: Path) -> None:
    binding = tmp_path / "undeploy.yaml"
    binding.write_text("apiVersion: openchoreo.dev/v1alpha1\nkind: ReleaseBinding\nmetadata: {name: gone, "
                       "namespace: default}\nspec: {owner: {projectName: ocrel, componentName: site}, "
                       "environment: oc-qa, state: Undeploy}\n")
    ok(run_cli(server, "apply", "-f", str(BINDINGS / "qa.yaml")))
    assert "oc-qa" in deployments(server)
    result = ok(run_cli(server, "apply", "-f", str(binding)))
    assert result.stdout.strip() == "releasebinding/gone undeployed (deployment/site[main]@oc-qa)"
    assert "oc-qa" not in deployments(server)
    again = ok(run_cli(server, "apply", "-f", str(binding)))
    assert again.stdout.strip() == "releasebinding/gone unchanged (not deployed in oc-qa)"


def test_a_bad_binding_is_refused_at_its_fields_with_the_other_documents(server: LiveServer,
                                                                        applied: tuple[str, str]) -> None:
    overrides = {"container": {"env": [{"key": "1BAD", "value": "x"}, {"key": "EMPTY"}]}}
    bad = oc("ReleaseBinding", "b", {"owner": {"projectName": "ocrel"}, "environment": "oc-dev", "state": "Paused",
                                     "enviroment": 1, "workloadOverrides": overrides}, namespace="default")
    typo = {**bad, "kind": "ReleaseBindng"}
    r = server.client().post("/apply", json={"documents": [doc("Project", "never", organization="default"),
                                                            bad, typo]})
    fields = {d["field"]: d["problem"] for d in error_of(r)["details"]}
    assert fields == {
        "documents[1].spec.enviroment": "unknown field (did you mean 'environment'?)",
        "documents[1].spec.owner.componentName": "required",
        "documents[1].spec.state": "'Paused' is not Active or Undeploy",
        "documents[1].spec.workloadOverrides.container.env[0].key": "'1BAD' is not an environment variable name "
                                                                     "([A-Za-z_][A-Za-z0-9_]*)",
        "documents[1].spec.workloadOverrides.container.env[1].value": "required: a string",
        "documents[2].kind": "'ReleaseBindng' is not an OpenChoreo kind (did you mean 'ReleaseBinding'?); the kinds "
                             "Cellplane maps are Organization, DataPlane, Environment, DeploymentPipeline, Project, "
                             "Component, Workload, ReleaseBinding, SecretReference"}
    assert server.client().get("/organizations/default/projects/never").status_code == 404


def test_a_binding_needs_the_right_to_deploy_in_its_environment(server: LiveServer, built: dict[str, Any]) -> None:
    admin = server.client()
    name = f"oc-viewer-{uuid.uuid4().hex[:6]}"
    assert admin.post("/users", json={"name": name}).status_code == 201
    token = admin.post(f"/users/{name}/tokens", json={"name": "t"}).json()["token"]
    r = admin.post("/organizations/default/rolebindings", json={"user": name, "role": "viewer"})
    assert r.status_code == 201, r.text
    before = deployments(server)
    line = fails(run_cli(server, "apply", "-f", str(BINDINGS / "dev.yaml"), token=token))
    assert line.startswith("error: ReleaseBinding 'site-oc-dev': permission 'deployments:create' is required on "
                           "project 'default/ocrel', environment 'oc-dev'")
    assert line.endswith(f"nothing was applied: {BINDINGS / 'dev.yaml'}: this binding")
    assert deployments(server) == before


def binding(name: str, environment: str, component: str = "site") -> dict[str, Any]:
    return oc("ReleaseBinding", name, {"owner": {"projectName": "ocrel", "componentName": component},
                                       "environment": environment}, namespace="default")


def test_what_a_binding_names_is_checked_with_every_other_document_before_anything_is_stored(
        server: LiveServer, applied: tuple[str, str]) -> None:
    bad_project = doc("Project", "never-two", {"deploymentPipelin": "x"}, organization="default")
    r = server.client().post("/apply", json={"documents": [
        bad_project, binding("to-nowhere", "nowhere"), binding("of-a-ghost", "oc-dev", "ghost")]})
    fields = {d["field"]: d["problem"] for d in error_of(r)["details"]}
    assert fields == {
        "documents[0].spec.deploymentPipelin": "unknown field",
        "documents[1].spec.environment": "no Environment 'nowhere' in organization 'default', in this apply or "
                                         "stored",
        "documents[2].spec.owner.componentName": "no Component 'ghost' of project 'ocrel' in organization 'default', "
                                                 "in this apply or stored"}


def test_a_binding_may_name_an_environment_of_the_same_apply(server: LiveServer, built: dict[str, Any]) -> None:
    extra = doc("Environment", "oc-extra", {"dataPlane": "oc-plane"}, organization="default")
    r = server.client().post("/apply", params={"dryRun": "true"},
                             json={"documents": [binding("to-extra", "oc-extra"), extra]})
    assert r.status_code == 200, r.text
    results = {(x["kind"], x["name"]): x for x in r.json()["results"]}
    assert results[("Environment", "oc-extra")]["action"] == "created"
    assert results[("ReleaseBinding", "to-extra")]["action"] == "deployed"  # not on the pipeline: the latest build
    assert results[("ReleaseBinding", "to-extra")]["detail"].startswith("to oc-extra: release ")
    assert server.client().get("/organizations/default/environments/oc-extra").status_code == 404  # a dry run
