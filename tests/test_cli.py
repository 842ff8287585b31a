"""The real ``cellplane`` binary against a real control plane (one per module, SQLite).

Every command runs as a subprocess, exactly as a user runs it. Errors must be one line on stderr starting
with ``error:``, with a non-zero exit and never a traceback. Setup and checks that are not about the CLI go
through the REST API, and independent invocations run side by side, to keep the module fast.
"""

from __future__ import annotations

import json
import stat
import subprocess
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from cellplane import API_VERSION, __version__
from liveserver import LiveServer, Result, as_json, doc, fails, free_port, ok, run_cli

ORG = "/organizations/default"


def run_all(server: LiveServer | None, *calls: Sequence[str] | tuple[Sequence[str], dict[str, Any]],
            **kwargs: Any) -> list[Result]:
    """Several independent invocations (arguments, or arguments and run_cli keywords), side by side."""
    def run(call: Any) -> Result:
        args, extra = call if isinstance(call, tuple) else (call, {})
        return run_cli(server, *args, **(kwargs | extra))

    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(run, calls))


def write_yaml(path: Path, *docs: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path


def created(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code in (200, 201), response.text
    return response.json()


def api_names(api: httpx.Client, path: str) -> set[str]:
    return {item["metadata"]["name"] for item in created(api.get(path, params={"limit": 1000}))["items"]}


@pytest.fixture(scope="module")
def live_server(shared_live_server: LiveServer) -> LiveServer:
    """This module's names are its own (projects and users in the default organization that no other sharing
    module uses): it shares the session's control plane."""
    return shared_live_server


@pytest.fixture(scope="module")
def api(live_server: LiveServer) -> httpx.Client:
    return live_server.client()


@pytest.fixture(scope="module")
def project(api: httpx.Client) -> str:
    """A project with a component ``api``, for tests that need one (not the acceptance scenario's)."""
    created(api.post(f"{ORG}/projects", json={"metadata": {"name": "tools"}, "spec": {}}))
    created(api.post(f"{ORG}/projects/tools/components",
                     json={"metadata": {"name": "api"}, "spec": {"endpoints": [{"name": "http", "port": 8080}]}}))
    return "tools"


def make_user(api: httpx.Client, name: str) -> str:
    created(api.post("/users", json={"name": name}))
    return created(api.post(f"/users/{name}/tokens", json={"name": "test"}))["token"]


@pytest.fixture(scope="module")
def nobody(api: httpx.Client) -> str:
    """The token of a user without any role."""
    return make_user(api, "nobody")


# -- login -----------------------------------------------------------------------------------------------------------


def test_login_saves_a_private_context_used_by_later_commands(live_server: LiveServer, tmp_path: Path) -> None:
    result = ok(run_cli(None, "login", "--server", live_server.url + "/", "--token", live_server.admin_token,
                        home=tmp_path))
    assert "admin" in result.stdout
    config = tmp_path / "config.yaml"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    saved = yaml.safe_load(config.read_text())
    assert saved["current"] == "default"
    assert saved["contexts"]["default"] == {"server": live_server.url, "token": live_server.admin_token}
    assert [p.name for p in tmp_path.iterdir()] == ["config.yaml"]  # no temporary file left behind

    # Neither --server nor --token from here on: the context has them.
    who, envs = run_all(None, ["whoami"], ["get", "environments", "-o", "json"], home=tmp_path)
    assert ok(who).stdout == "admin (platform administrator)\n"
    assert {"development", "staging", "production"} <= {i["metadata"]["name"] for i in as_json(envs)["items"]}


def test_login_keeps_other_contexts_and_a_default_project(live_server: LiveServer, tmp_path: Path,
                                                          project: str) -> None:
    ok(run_cli(None, "login", "--server", live_server.url, "--token", live_server.admin_token, home=tmp_path))
    ok(run_cli(None, "-p", project, "login", "--server", live_server.url, "--token", live_server.admin_token,
               "--context", "tools", home=tmp_path))
    saved = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert set(saved["contexts"]) == {"default", "tools"}
    assert saved["current"] == "tools"
    assert saved["contexts"]["tools"]["project"] == project
    # The context's project is the default for project-scoped commands.
    assert as_json(run_cli(None, "get", "component", "api", "-o", "json", home=tmp_path))["metadata"]["project"] == (
        project)


def test_login_with_a_bad_token_saves_nothing(live_server: LiveServer, tmp_path: Path) -> None:
    unreachable = f"http://127.0.0.1:{free_port()}"
    bad, garbage, offline = run_all(
        None,
        ["login", "--server", live_server.url, "--token", "cpt_000000000000_not-a-real-token-at-all"],
        ["login", "--server", live_server.url, "--token", "garbage"],
        ["login", "--server", unreachable, "--token", live_server.admin_token],
        home=tmp_path)
    assert "the API token is not valid" in fails(bad)
    assert "token" in fails(garbage)
    assert f"cannot reach the control plane at {unreachable}" in fails(offline)
    assert not (tmp_path / "config.yaml").exists()


# -- the acceptance scenario -----------------------------------------------------------------------------------------


def test_global_options_may_follow_the_command(live_server: LiveServer) -> None:
    result = run_cli(None, "get", "environments", "-o", "json", "--server", live_server.url,
                     f"--token={live_server.admin_token}", "--org", "default")
    assert result.returncode == 0, result.stderr
    assert {e["metadata"]["name"] for e in json.loads(result.stdout)["items"]} >= {"development", "production"}


def test_create_component_from_a_git_url_at_a_branch_and_path(live_server: LiveServer, tmp_path: Path) -> None:
    repo = tmp_path / "monorepo"
    (repo / "services" / "billing" / ".choreo").mkdir(parents=True)
    (repo / "services" / "billing" / ".choreo" / "endpoints.yaml").write_text(
        "version: 0.1\nendpoints:\n  - name: billing\n    port: 7070\n    type: REST\n"
        "    networkVisibility: Project\n    context: /billing\n")

    def git(*args: str) -> None:
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", "-C", str(repo), *args],
                       check=True, capture_output=True)

    git("init", "-q", "-b", "trunk")
    git("add", ".")
    git("commit", "-q", "-m", "billing")
    ok(run_cli(live_server, "create", "project", "monorepo"))
    result = ok(run_cli(live_server, "create", "component", "billing", "-p", "monorepo", "--source",
                        f"file://{repo}", "--branch", "trunk", "--path", "services/billing", "-o", "json"))
    created = json.loads(result.stdout)
    assert created["descriptor"] == ".choreo/endpoints.yaml"
    spec = created["component"]["spec"]
    assert spec["source"] == {"repository": f"file://{repo}", "branch": "trunk", "path": "services/billing"}
    assert [(e["name"], e["port"], e["basePath"]) for e in spec["endpoints"]] == [("billing", 7070, "/billing")]
    line = fails(run_cli(live_server, "create", "component", "nope", "-p", "monorepo", "--source",
                         f"file://{repo}", "--branch", "no-such-branch"))
    assert "source.repository" in line


def test_acceptance_scenario(live_server: LiveServer, tmp_path: Path) -> None:
    source = tmp_path / "orders"
    (source / ".choreo").mkdir(parents=True)
    (source / ".choreo" / "component.yaml").write_text(
        "schemaVersion: 1.2\n"
        "endpoints:\n"
        "  - name: orders-api\n"
        "    service:\n"
        "      basePath: /orders\n"
        "      port: 8080\n"
        "    type: REST\n"
        "    networkVisibilities: [Public]\n")
    (source / "main.py").write_text("print('orders')\n")

    assert ok(run_cli(live_server, "create", "project", "shop")).stdout == "project/shop created\n"
    result = ok(run_cli(live_server, "create", "component", "orders", "--project", "shop", "--source", str(source)))
    assert result.stdout.startswith("component/orders created from .choreo/component.yaml\n")
    assert "endpoint orders-api: port 8080 REST /orders (Public)" in result.stdout

    listing = as_json(run_cli(live_server, "get", "components", "-o", "json"))
    assert listing["kind"] == "ComponentList"
    orders = [c for c in listing["items"] if c["metadata"]["name"] == "orders"]
    assert len(orders) == 1
    assert orders[0]["metadata"]["project"] == "shop"
    assert orders[0]["spec"]["endpoints"] == [
        {"name": "orders-api", "port": 8080, "type": "REST", "basePath": "/orders", "visibility": ["Public"]}]
    assert orders[0]["spec"]["source"]["repository"] == str(source.resolve())
    components_before = {c["metadata"]["name"] for c in listing["items"]}

    bad = write_yaml(tmp_path / "bad.yaml",
                     doc("Project", "shop-extra"),
                     doc("Component", "fine", {"endpoints": [{"name": "http", "port": 80}]}, project="shop"),
                     doc("Component", "Bad_Name!", {}, project="shop"))
    line = fails(run_cli(live_server, "apply", "-f", str(bad)))
    assert "metadata.name" in line
    assert "bad.yaml (document 3)" in line
    assert "nothing was applied" in line

    projects, components = (as_json(r)["items"] for r in run_all(
        live_server, ["get", "projects", "-o", "json"], ["get", "components", "-o", "json"]))
    assert "shop-extra" not in {p["metadata"]["name"] for p in projects}
    assert {c["metadata"]["name"] for c in components} == components_before


# -- apply -----------------------------------------------------------------------------------------------------------


def test_apply_file_multi_document_created_configured_unchanged(live_server: LiveServer, api: httpx.Client,
                                                                tmp_path: Path) -> None:
    docs = [doc("Project", "apply-a", {"description": "first"}),
            doc("Component", "web", {"type": "web-app", "endpoints": [{"name": "http", "port": 3000}]},
                project="apply-a")]
    path = write_yaml(tmp_path / "a.yaml", *docs)
    assert ok(run_cli(live_server, "apply", "-f", str(path))).stdout == (
        "project/apply-a created\ncomponent/web created\n")
    assert ok(run_cli(live_server, "apply", "-f", str(path))).stdout == (
        "project/apply-a unchanged\ncomponent/web unchanged\n")
    docs[0]["spec"]["description"] = "second"
    write_yaml(path, *docs)
    assert ok(run_cli(live_server, "apply", "-f", str(path))).stdout == (
        "project/apply-a configured\ncomponent/web unchanged\n")
    got = created(api.get(f"{ORG}/projects/apply-a"))
    assert (got["spec"]["description"], got["metadata"]["generation"]) == ("second", 2)


def test_apply_directory_and_stdin(live_server: LiveServer, api: httpx.Client, tmp_path: Path) -> None:
    folder = tmp_path / "manifests"
    folder.mkdir()
    write_yaml(folder / "1-project.yaml", doc("Project", "apply-dir"))
    (folder / "2-component.json").write_text(json.dumps(
        doc("Component", "worker", {"type": "worker"}, project="apply-dir")))
    (folder / "README.md").write_text("not a manifest")
    assert ok(run_cli(live_server, "apply", "-f", str(folder))).stdout == (
        "project/apply-dir created\ncomponent/worker created\n")

    stdin = yaml.safe_dump_all([doc("Component", "job", {"type": "manual-task"}, project="apply-dir"),
                                doc("Component", "job2", {"type": "manual-task"})])
    # The project of a document without one comes from --project.
    assert ok(run_cli(live_server, "apply", "-f", "-", "-p", "apply-dir", input=stdin)).stdout == (
        "component/job created\ncomponent/job2 created\n")
    assert api_names(api, f"{ORG}/projects/apply-dir/components") == {"worker", "job", "job2"}


def test_apply_dry_run_and_output_formats(live_server: LiveServer, api: httpx.Client, tmp_path: Path) -> None:
    path = write_yaml(tmp_path / "d.yaml", doc("Project", "dry"), doc("Component", "c", {}, project="dry"))
    table, as_json_, as_yaml = run_all(live_server, ["apply", "-f", str(path), "--dry-run"],
                                       ["apply", "-f", str(path), "--dry-run", "-o", "json"],
                                       ["apply", "-f", str(path), "--dry-run", "-o", "yaml"])
    assert ok(table).stdout == "project/dry created (dry run)\ncomponent/c created (dry run)\n"
    for out in (json.loads(ok(as_json_).stdout), yaml.safe_load(ok(as_yaml).stdout)):
        assert out["dryRun"] is True
        assert [(r["document"], r["kind"], r["name"], r["organization"], r["project"], r["action"])
                for r in out["results"]] == [(0, "Project", "dry", "default", None, "created"),
                                             (1, "Component", "c", "default", "dry", "created")]
    assert "dry" not in api_names(api, f"{ORG}/projects")

    out = as_json(run_cli(live_server, "apply", "-f", str(path), "-o", "json"))
    assert out["dryRun"] is False and [r["action"] for r in out["results"]] == ["created", "created"]
    assert "dry" in api_names(api, f"{ORG}/projects")


def test_apply_file_errors(live_server: LiveServer, api: httpx.Client, tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("apiVersion: cellplane.dev/v1alpha1\nkind: Project\nmetadata:\n  name: [unclosed\n")
    (tmp_path / "empty").mkdir()
    write_yaml(tmp_path / "a.yaml", doc("Project", "labelled"))
    write_yaml(tmp_path / "b.yaml", doc("Project", "labelled-2", {"deploymentPipeline": "nope"}))
    syntax, missing, empty_dir, empty_stdin, invalid = run_all(
        live_server,
        ["apply", "-f", str(broken)],
        ["apply", "-f", str(tmp_path / "does-not-exist.yaml")],
        ["apply", "-f", str(tmp_path / "empty")],
        ["apply", "-f", "-"],
        ["apply", "-f", str(tmp_path / "a.yaml"), "-f", str(tmp_path / "b.yaml")],
        input="")
    line = fails(syntax)
    assert line.startswith(f"error: {broken}: line 5, column 1: not valid YAML"), line
    assert fails(missing) == f"error: {tmp_path / 'does-not-exist.yaml'}: no such file or directory"
    assert "no .yaml, .yml or .json files" in fails(empty_dir)
    assert fails(empty_stdin) == "error: no documents to apply"
    assert f"{tmp_path / 'b.yaml'}: spec.deploymentPipeline" in fails(invalid)
    assert "labelled" not in api_names(api, f"{ORG}/projects")


# -- get, describe, delete -------------------------------------------------------------------------------------------


def test_get_every_kind_in_every_format(live_server: LiveServer, api: httpx.Client, project: str) -> None:
    created(api.post(f"{ORG}/dataplanes", json={"metadata": {"name": "local"}, "spec": {"type": "local"}}))
    kinds = {"organizations": ("Organization", "default", []), "dataplanes": ("DataPlane", "local", []),
             "environments": ("Environment", "production", []),
             "deploymentpipelines": ("DeploymentPipeline", "default", []),
             "projects": ("Project", project, []), "components": ("Component", "api", ["-p", project])}
    calls = []
    for plural, (_, name, scope) in kinds.items():
        calls += [["get", plural, *scope], ["get", plural, *scope, "-o", "json"],
                  ["get", plural, name, *scope, "-o", "yaml"]]
    results = iter(run_all(live_server, *calls))
    for plural, (kind, name, _) in kinds.items():
        table, listing, one = next(results), next(results), next(results)
        rows = ok(table).stdout.splitlines()
        assert rows[0].split()[0] == "NAME", plural
        assert name in {row.split()[0] for row in rows[1:]}, plural
        listing = as_json(listing)
        assert listing["kind"] == f"{kind}List"
        assert name in {i["metadata"]["name"] for i in listing["items"]}
        one = yaml.safe_load(ok(one).stdout)
        assert (one["apiVersion"], one["kind"], one["metadata"]["name"]) == (API_VERSION, kind, name)


def test_get_one_as_table_and_json_and_apply_its_output_again(live_server: LiveServer, project: str) -> None:
    table, one, as_yaml = run_all(live_server, ["get", "component", "api", "-p", project],
                                  ["get", "component", "api", "-p", project, "-o", "json"],
                                  ["get", "component", "api", "-p", project, "-o", "yaml"])
    header, row = ok(table).stdout.splitlines()
    assert header.split() == ["NAME", "PROJECT", "TYPE", "ENDPOINTS", "AGE"]
    assert row.split()[:4] == ["api", project, "service", "http:8080"]
    assert as_json(one)["metadata"]["name"] == "api"
    assert ok(run_cli(live_server, "apply", "-f", "-", input=ok(as_yaml).stdout)).stdout == (
        "component/api unchanged\n")


def test_kind_aliases(live_server: LiveServer, project: str) -> None:
    env, components, component, pipeline = run_all(
        live_server, ["get", "env", "-o", "json"], ["get", "components", "-p", project, "-o", "json"],
        ["get", "Component", "-p", project, "-o", "json"], ["get", "pipeline", "default", "-o", "json"])
    assert {"development", "staging", "production"} <= {i["metadata"]["name"] for i in as_json(env)["items"]}
    assert as_json(components)["items"] == as_json(component)["items"]
    assert "api" in {i["metadata"]["name"] for i in as_json(component)["items"]}
    assert as_json(pipeline)["kind"] == "DeploymentPipeline"


def test_empty_list_and_limit(live_server: LiveServer, api: httpx.Client) -> None:
    created(api.post(f"{ORG}/projects", json={"metadata": {"name": "empty-proj"}, "spec": {}}))
    table, listing, limited = run_all(live_server, ["get", "components", "-p", "empty-proj"],
                                      ["get", "components", "-p", "empty-proj", "-o", "json"],
                                      ["get", "environments", "--limit", "2", "-o", "json"])
    assert (ok(table).stdout, table.stderr) == ("", "No components found.\n")
    assert as_json(listing)["items"] == []
    assert len(as_json(limited)["items"]) == 2


def test_describe_component(live_server: LiveServer, api: httpx.Client, project: str) -> None:
    created(api.put(f"{ORG}/projects/{project}/components/api/config/GREETING", json={"value": "hello"}))
    table, full = run_all(live_server, ["describe", "component", "api", "-p", project],
                          ["describe", "component", "api", "-p", project, "-o", "json"])
    out = ok(table).stdout
    assert out.startswith(f"Component api  (default/{project})\n")
    assert "  type: service\n" in out
    assert any(line.split()[:2] == ["http", "8080"] for line in out.splitlines())
    assert any(line.split()[:2] == ["GREETING", "hello"] for line in out.splitlines())
    full = as_json(full)
    assert full["metadata"]["name"] == "api"
    assert {c["key"]: c["value"] for c in full["configuration"]}["GREETING"] == "hello"


def test_user_text_is_shown_literally(live_server: LiveServer, api: httpx.Client) -> None:
    """Descriptions and annotations are data, not console markup: brackets and emoji codes stay as written.
    Piped, a table row stays on one line however long it is."""
    description = "[draft] :smile: [/] " + "long " * 100
    created(api.post(f"{ORG}/projects", json={"metadata": {"name": "literal", "annotations": {"note": "[/] [red]x"}},
                                              "spec": {"description": description}}))
    described, table = run_all(live_server, ["describe", "project", "literal"], ["get", "project", "literal"])
    assert "note=[/] [red]x" in ok(described).stdout
    assert "[draft] :smile: [/]" in described.stdout
    header, row = ok(table).stdout.splitlines()
    assert header.split() == ["NAME", "PIPELINE", "DESCRIPTION", "AGE"]
    assert description.strip() in row


def test_delete_component(live_server: LiveServer, api: httpx.Client) -> None:
    created(api.post(f"{ORG}/projects", json={"metadata": {"name": "del-proj"}, "spec": {}}))
    created(api.post(f"{ORG}/projects/del-proj/components", json={"metadata": {"name": "gone"}, "spec": {}}))
    assert ok(run_cli(live_server, "delete", "component", "gone", "-p", "del-proj")).stdout == (
        "component/gone deleted\n")
    assert "gone" not in api_names(api, f"{ORG}/projects/del-proj/components")
    again, get = run_all(live_server, ["delete", "component", "gone", "-p", "del-proj"],
                         ["get", "component", "gone", "-p", "del-proj"])
    assert fails(again) == fails(get) == "error: Component 'default/del-proj/gone' not found"


# -- config and secrets ----------------------------------------------------------------------------------------------

SECRET = "pl41ntext-S3CRET-never-shown"
STDIN_SECRET = "st4din-S3CRET-never-shown"


def test_config_values_and_secrets(live_server: LiveServer, project: str) -> None:
    seen: list[Result] = []

    def cli(*calls: Sequence[str], input: str | None = None) -> list[Result]:
        results = [ok(r) for r in run_all(live_server, *calls, input=input)]
        seen.extend(results)
        return results

    base = ["-p", project]
    plain, secret = cli(["config", "set", "api", *base, "--env", "development", "LOG_LEVEL=debug", "EQ=a=b"],
                        ["config", "set", "api", *base, "--env", "development", f"DB_PASSWORD={SECRET}", "--secret"])
    assert plain.stdout == "LOG_LEVEL set (version 1) in development\nEQ set (version 1) in development\n"
    assert secret.stdout == "DB_PASSWORD set (version 1) in development [secret]\n"
    (from_stdin,) = cli(["config", "set", "api", *base, "API_KEY=-", "--secret"], input=STDIN_SECRET + "\n")
    assert from_stdin.stdout == "API_KEY set (version 1) in every environment [secret]\n"
    (plain_stdin,) = cli(["config", "set", "api", *base, "FROM_STDIN=-"], input="line one\n")
    assert plain_stdin.stdout == "FROM_STDIN set (version 1) in every environment\n"
    (again,) = cli(["config", "set", "api", *base, "--env", "development", "LOG_LEVEL=debug"])
    assert again.stdout == "LOG_LEVEL unchanged in development\n"

    listing, table = cli(["config", "get", "api", *base, "-o", "json"],
                         ["config", "get", "api", *base, "--env", "development"])
    values = {(c["key"], c["environment"]): c for c in json.loads(listing.stdout)}
    assert (values[("DB_PASSWORD", "development")]["value"], values[("DB_PASSWORD", "development")]["secret"]) == (
        "********", True)
    assert values[("API_KEY", None)]["value"] == "********"
    assert values[("FROM_STDIN", None)]["value"] == "line one"
    assert values[("EQ", "development")]["value"] == "a=b"
    assert values[("LOG_LEVEL", "development")]["value"] == "debug"
    # What development sees; the table masks secrets too.
    rows = {line.split()[0]: line.split() for line in table.stdout.splitlines()[1:]}
    assert rows["DB_PASSWORD"][1:4] == ["********", "yes", "development"]
    assert rows["API_KEY"][1:4] == ["********", "yes", "all"]
    assert rows["LOG_LEVEL"][1] == "debug"

    # A secret in an applied spec is absorbed into encrypted storage.
    document = doc("Component", "api", {"endpoints": [{"name": "http", "port": 8080}], "configuration": {
        "env": [{"name": "SPEC_SECRET", "value": SECRET + "-spec", "secret": True}]}}, project=project)
    cli(["apply", "-f", "-", "-o", "json"], input=yaml.safe_dump(document))
    _, _, _, got, _, _ = cli(["config", "get", "api", *base, "-o", "yaml"], ["describe", "component", "api", *base],
                             ["describe", "component", "api", *base, "-o", "yaml"],
                             ["get", "component", "api", *base, "-o", "json"], ["audit", "--limit", "100"],
                             ["audit", "--limit", "100", "-o", "json"])
    assert json.loads(got.stdout)["spec"]["configuration"]["env"] == [{"name": "SPEC_SECRET", "secret": True}]
    (unset,) = cli(["config", "unset", "api", *base, "EQ", "--env", "development"])
    assert unset.stdout == "EQ unset in development\n"

    for result in seen:
        for text in (SECRET, STDIN_SECRET):
            assert text not in result.stdout and text not in result.stderr, result.args


# -- users, tokens, roles, audit, keys -------------------------------------------------------------------------------


def test_users_tokens_and_role_bindings(live_server: LiveServer, project: str) -> None:
    assert ok(run_cli(live_server, "create", "user", "dev1", "--email", "dev1@example.com")).stdout == (
        "user/dev1 created\n")
    issued = ok(run_cli(live_server, "create", "token", "--user", "dev1", "--name", "laptop"))
    token = issued.stdout.strip()
    assert issued.stdout == token + "\n"  # the token alone on stdout, so that $(...) captures it
    assert token.startswith("cpt_")
    assert "shown once" in issued.stderr and token not in issued.stderr

    who, denied = run_all(live_server, ["whoami"], ["get", "components", "-p", project], token=token)
    assert ok(who).stdout == "dev1\n"
    assert "permission 'components:list' is required" in fails(denied)

    granted = ok(run_cli(live_server, "grant", "developer", "--user", "dev1", "--project", project)).stdout
    assert granted.startswith("rolebinding/")
    assert granted.endswith(f" created: developer for dev1 on project {project}\n")
    binding = granted.split()[0].split("/")[1]
    listing, table = run_all(live_server, ["rolebindings", "-o", "json"], ["rolebindings"])
    listed = next(b for b in as_json(listing) if b["id"] == binding)
    assert {k: listed[k] for k in ("user", "role", "organization", "project", "environment")} == {
        "user": "dev1", "role": "developer", "organization": "default", "project": project, "environment": None}
    assert [binding, "dev1", "developer", project, "-"] in [line.split() for line in ok(table).stdout.splitlines()]

    # The developer can now work in the project, and only there.
    who, applied, denied = run_all(
        live_server, ["whoami"], ["apply", "-f", "-", "-p", project], ["create", "project", "not-mine"],
        token=token, input=yaml.safe_dump(doc("Component", "devs", {})))
    assert ok(who).stdout == f"dev1\n  developer on organization default, project {project}\n"
    assert ok(applied).stdout == "component/devs created\n"
    assert "permission 'projects:create' is required" in fails(denied)

    assert ok(run_cli(live_server, "revoke", binding)).stdout == f"rolebinding/{binding} deleted\n"
    listing, again, who, own = run_all(live_server, ["rolebindings", "-o", "json"], ["revoke", binding],
                                       ["--token", token, "whoami", "-o", "json"],
                                       ["--token", token, "create", "token"])
    assert binding not in {b["id"] for b in as_json(listing)}
    assert fails(again) == f"error: role binding '{binding}' not found in organization 'default'"
    assert as_json(who) == {"user": "dev1", "superuser": False, "roles": []}
    # A token of one's own, without --user.
    own_token = ok(own).stdout.strip()
    assert own_token.startswith("cpt_") and own_token != token


def test_audit_lists_events(live_server: LiveServer, api: httpx.Client, nobody: str) -> None:
    created(api.post(f"{ORG}/projects", json={"metadata": {"name": "audited"}, "spec": {}}))
    denied = live_server.client(nobody).post(f"{ORG}/projects", json={"metadata": {"name": "audited-denied"}})
    assert denied.status_code == 403
    everything, mine, two, table = run_all(live_server, ["audit", "-o", "json", "--limit", "1000"],
                                           ["audit", "--actor", "nobody", "-o", "yaml"],
                                           ["audit", "--limit", "2", "-o", "json"], ["audit", "--limit", "5"])
    events = as_json(everything)
    assert {"actor": "admin", "action": "create", "kind": "Project", "name": "audited", "outcome": "succeeded"} in [
        {k: e[k] for k in ("actor", "action", "kind", "name", "outcome")} for e in events]
    ids = [e["id"] for e in events]
    assert ids == sorted(ids, reverse=True)  # newest first
    mine = yaml.safe_load(ok(mine).stdout)
    assert mine and {(e["actor"], e["outcome"]) for e in mine} == {("nobody", "denied")}
    assert len(as_json(two)) == 2
    lines = ok(table).stdout.splitlines()
    assert lines[0].split() == ["TIME", "ACTOR", "ACTION", "RESOURCE", "OUTCOME", "MESSAGE"]
    assert len(lines) == 1 + min(5, len(events))  # one line per event, however long its message


def test_admin_rotate_key(live_server: LiveServer, api: httpx.Client, project: str, nobody: str) -> None:
    created(api.put(f"{ORG}/projects/{project}/components/api/config/ROTATED",
                    json={"value": "before-rotation", "secret": True}))
    out = ok(run_cli(live_server, "admin", "rotate-key")).stdout
    assert out.startswith("master key rotated: new key ")
    new_key = out.split("new key ")[1].split(",")[0]
    assert "secrets re-encrypted, retired " in out
    ring = (live_server.data_dir / "master.key").read_text().splitlines()
    assert [line.split(":")[0] for line in ring] == [new_key]
    # Secrets still decrypt: setting the same value again is "unchanged".
    same, denied = run_all(live_server, ["config", "set", "api", "-p", project, "ROTATED=before-rotation", "--secret"],
                           ["--token", nobody, "admin", "rotate-key"])
    assert ok(same).stdout == "ROTATED unchanged in every environment [secret]\n"
    assert fails(denied) == "error: only a platform administrator may rotate the master key"


def test_whoami_and_version(live_server: LiveServer) -> None:
    who, who_yaml, version, version_json = run_all(live_server, ["whoami"], ["whoami", "-o", "yaml"], ["version"],
                                                   ["version", "-o", "json"])
    assert ok(who).stdout == "admin (platform administrator)\n"
    assert yaml.safe_load(ok(who_yaml).stdout) == {"user": "admin", "superuser": True, "roles": []}
    client, server = ok(version).stdout.splitlines()
    assert client == f"Client: {__version__} ({API_VERSION})"
    assert server == f"Server: {__version__} (sqlite)"
    info = as_json(version_json)
    assert info["client"] == {"version": __version__, "apiVersion": API_VERSION}
    assert info["server"]["database"] == "sqlite"
    # Without a server, the client's version still shows.
    offline = ok(run_cli(None, "--server", f"http://127.0.0.1:{free_port()}", "version"))
    assert offline.stdout.startswith(f"Client: {__version__}") and "Server: unavailable (cannot reach" in offline.stdout


# -- error discipline ------------------------------------------------------------------------------------------------


def test_no_arguments_prints_help_and_exits_2_and_help_exits_0(live_server: LiveServer) -> None:
    bare, group, helped, command_help = run_all(live_server, [], ["config"], ["--help"], ["get", "-h"])
    for result in (bare, group):
        assert result.returncode == 2, result
        assert "Usage: cellplane" in result.stdout
        assert result.stderr == ""
        assert "Traceback" not in result.stdout
    assert "Usage: cellplane [OPTIONS] COMMAND" in ok(helped).stdout
    assert "Usage: cellplane get [OPTIONS]" in ok(command_help).stdout


def test_error_discipline(live_server: LiveServer, nobody: str, project: str) -> None:
    """Each bad invocation: non-zero exit, exactly one 'error: ...' line on stderr, nothing on stdout."""
    unreachable = f"http://127.0.0.1:{free_port()}"
    admin = live_server.admin_token
    cases: list[tuple[str, list[str], str]] = [
        # (what, arguments, expected text in the line); --token "" means "no token at all"
        ("unreachable server", ["--server", unreachable, "--token", admin, "get", "projects"],
         f"cannot reach the control plane at {unreachable}"),
        ("server URL without scheme", ["--server", "localhost:1", "--token", admin, "get", "projects"], "localhost:1"),
        ("no token", ["get", "projects"], "not logged in"),
        ("revoked token", ["--token", "cpt_000000000000_" + "x" * 40, "get", "projects"], "token is not valid"),
        ("403", ["--token", nobody, "create", "project", "forbidden"], "permission 'projects:create'"),
        ("403 list", ["--token", nobody, "get", "components", "-p", project], "permission 'components:list'"),
        ("403 config", ["--token", nobody, "config", "get", "api", "-p", project], "permission 'config:read'"),
        ("404 get", ["get", "project", "no-such-project"], "not found"),
        ("404 project", ["get", "components", "-p", "no-such-project"], "not found"),
        ("404 describe", ["describe", "component", "nope", "-p", project], "not found"),
        ("404 user", ["create", "token", "--user", "no-such-user"], "not found"),
        ("404 environment", ["config", "set", "api", "-p", project, "--env", "mars", "A=1"], "not found"),
        ("404 config key", ["config", "unset", "api", "-p", project, "NEVER_SET"], "not set"),
        ("422 name", ["create", "project", "Bad_Name"], "metadata.name"),
        ("422 role", ["grant", "wizard", "--user", "nobody"], "role"),
        ("422 config key", ["config", "set", "api", "-p", project, "1BAD=x"], "key"),
        ("409 exists", ["create", "project", project], "already exists"),
        ("not KEY=VALUE", ["config", "set", "api", "-p", project, "NOEQUALS"], "'NOEQUALS' is not KEY=VALUE"),
        ("two stdin values", ["config", "set", "api", "-p", project, "A=-", "B=-"], "only one KEY=-"),
        ("missing project", ["get", "component", "api"], "no project given"),
        ("bad output", ["get", "projects", "-o", "xml"], "xml"),
        ("bad limit", ["get", "projects", "--limit", "0"], "--limit"),
        ("non-numeric limit", ["audit", "--limit", "many"], "--limit"),
        ("limit too high", ["audit", "--limit", "5000"], "--limit"),
        ("bad expiry", ["create", "token", "--expires-in-days", "0"], "--expires-in-days"),
        ("unknown command", ["launch"], "launch"),
        ("unknown option", ["get", "projects", "--colour"], "--colour"),
        ("unknown kind", ["get", "widgets"], "'widgets' is not a kind"),
        ("unknown kind describe", ["describe", "widget", "x"], "'widget' is not a kind"),
        ("unknown kind delete", ["delete", "widget", "x"], "'widget' is not a kind"),
        ("missing kind", ["get"], "kind"),
        ("missing -f", ["apply"], "-f"),
        ("missing --token", ["login", "--server", live_server.url], "--token"),
        ("missing --user", ["grant", "developer"], "--user"),
        ("missing --source", ["create", "component", "x", "-p", project], "--source"),
        ("missing assignment", ["config", "set", "api", "-p", project], "assignments"),
        ("no such --path", ["create", "component", "x", "-p", project, "--source", "/", "--path", "no/such"],
         "no such directory"),
    ]
    results = run_all(live_server, *[(args, {"token": ""}) if what == "no token" else args
                                     for what, args, _ in cases])
    for (what, args, expected), result in zip(cases, results, strict=True):
        try:
            line = fails(result)
        except AssertionError as e:
            raise AssertionError(f"{what}: cellplane {' '.join(args)}: {e}") from None
        assert expected.lower() in line.lower(), f"{what}: {line}"
        assert SECRET not in line
