"""Builds end to end: a real control plane builds the fixture apps, and each artifact is run and answers HTTP."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import shutil
import tarfile
import time
from pathlib import Path

import pytest

from buildkit import (
    APPS,
    component,
    failed_why,
    git,
    git_repo,
    log_text,
    processes_matching,
    start,
    tarball,
    upload,
    wait,
)
from liveserver import run_cli, start_server

pytestmark = pytest.mark.timeout(900)


def succeeded(c, info):
    info = wait(c, info)
    assert info["state"] == "succeeded", failed_why(c, info)
    assert info["artifact"].startswith("sha256:") and len(info["artifact"]) == 71
    return info


# -- each kind of app builds, and its artifact runs --------------------------------------------------------------


def test_flask_procfile_from_a_local_directory_with_the_cli(build_server, run_artifact, tmp_path):
    s = build_server.server
    r = run_cli(s, "create", "project", "apps")
    assert r.returncode == 0, r.stderr
    r = run_cli(s, "create", "component", "flask", "--project", "apps", "--source", str(APPS / "flask-procfile"))
    assert r.returncode == 0, r.stderr
    r = run_cli(s, "build", "flask", "--project", "apps", "--follow")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "succeeded" in r.stderr and "artifact: sha256:" in r.stdout
    assert "gunicorn" in r.stderr  # the live log reached the terminal
    digest = next(line.split()[1] for line in r.stdout.splitlines() if line.startswith("artifact:"))

    shown = run_cli(s, "build", "show", json.loads(run_cli(s, "build", "list", "flask", "-p", "apps", "-o",
                                                           "json").stdout)[0]["id"])
    assert shown.returncode == 0, shown.stderr
    assert "procfile" in shown.stdout and "Procfile" in shown.stdout  # which strategy, and why
    app = run_artifact("apps", digest)
    assert app.get("/").json() == {"app": "flask-procfile"}


def test_fastapi_pyproject_from_a_git_repository(build_server, run_artifact, tmp_path):
    c = build_server.client
    repo = git_repo(tmp_path, APPS / "fastapi-pyproject")
    component(c, "apps", "fastapi", {"source": {"repository": f"file://{repo}", "branch": "main"},
                                     "build": {"test": "python check.py"}})
    info = succeeded(c, start(c, "apps", "fastapi"))
    assert info["commit"] == git(repo, "rev-parse", "HEAD")
    assert info["detection"]["strategy"] == "python" and "uvicorn" in info["detection"]["run"]
    assert [s["state"] for s in info["steps"] if s["name"] == "test"] == ["succeeded"]
    manifest = c.get(f"/organizations/default/projects/apps/artifacts/{info['artifact']}/manifest").json()
    pins = {d["name"].lower(): d["version"] for d in manifest["manifest"]["dependencies"]}
    assert "fastapi" in pins and "starlette" in pins  # the lock holds transitive dependencies, exactly pinned
    app = run_artifact("apps", info["artifact"])
    assert app.get("/").json()["app"] == "fastapi-pyproject"


def test_flask_described_only_by_a_dockerfile(build_server, run_artifact):
    c = build_server.client
    component(c, "apps", "docker-flask", {"endpoints": [{"name": "web", "port": 5000}]})
    info = succeeded(c, upload(c, "apps", "docker-flask", APPS / "flask-dockerfile"))
    assert info["detection"]["strategy"] == "dockerfile"
    assert any("10014" in n or "USER" in n for n in info["detection"]["notes"])  # Choreo's USER line is accepted
    app = run_artifact("apps", info["artifact"], port=5000)  # the CMD binds its declared port itself
    assert app.get("/").status_code == 200


def test_express_app(build_server, run_artifact):
    c = build_server.client
    component(c, "apps", "express")
    info = succeeded(c, upload(c, "apps", "express", APPS / "express"))
    assert info["detection"]["strategy"] == "node"
    assert "npm ci" in log_text(c, info["id"])  # a lockfile exists
    app = run_artifact("apps", info["artifact"])
    assert app.get("/").json()["app"] == "express"


def test_static_site_with_spa_fallback(build_server, run_artifact):
    c = build_server.client
    component(c, "apps", "site", {"type": "web-app"})
    info = succeeded(c, upload(c, "apps", "site", APPS / "static-site"))
    assert info["detection"]["strategy"] == "static"
    app = run_artifact("apps", info["artifact"])
    index = app.get("/")
    assert index.status_code == 200 and "<html" in index.text.lower()
    assert app.get("/some/client/route").text == index.text
    assert app.get("/assets/missing.js").status_code == 404


def test_the_same_archive_uploaded_for_several_builds_builds_every_time(build_server):
    """Uploads are content-addressed blobs: the first build to finish must not delete the one that builds
    still queued share."""
    c = build_server.client
    started = []
    for i in range(4):  # two build workers: the last ones wait in the queue while the first ones finish
        component(c, "same-upload", f"site-{i}", {"type": "web-app"})
        started.append(upload(c, "same-upload", f"site-{i}", APPS / "static-site"))
    finished = [succeeded(c, info) for info in started]
    assert len({info["artifact"] for info in finished}) == 1


def test_web_app_with_a_build_script(build_server, run_artifact):
    c = build_server.client
    component(c, "apps", "spa", {"type": "web-app"})
    info = succeeded(c, upload(c, "apps", "spa", APPS / "react-like"))
    assert info["detection"]["strategy"] == "static"
    assert [s["state"] for s in info["steps"] if s["name"] == "build"] == ["succeeded"]
    app = run_artifact("apps", info["artifact"])
    assert app.get("/").status_code == 200


def test_monorepo_sub_paths_at_a_branch_a_tag_and_a_commit(build_server, run_artifact, tmp_path):
    c = build_server.client
    repo = git_repo(tmp_path, APPS / "monorepo")
    first = git(repo, "rev-parse", "HEAD")
    git(repo, "tag", "v1.0.0")
    git(repo, "checkout", "-q", "-b", "release-1.x")
    (repo / "web" / "site" / "index.html").write_text("<html><body>release branch</body></html>\n")
    git(repo, "commit", "-q", "-am", "release")
    git(repo, "checkout", "-q", "main")
    component(c, "mono", "greeter", {"source": {"repository": f"file://{repo}", "path": "services/greeter"}})
    component(c, "mono", "site", {"type": "web-app", "source": {"repository": str(repo), "path": "web/site"}})

    greeter = succeeded(c, start(c, "mono", "greeter"))
    assert greeter["detection"]["strategy"] == "python" and greeter["commit"] == first
    assert run_artifact("mono", greeter["artifact"]).get("/").status_code == 200

    on_branch = succeeded(c, start(c, "mono", "site", track="release-1.x"))
    assert on_branch["track"] == "release-1.x" and on_branch["commit"] != first
    assert "release branch" in run_artifact("mono", on_branch["artifact"]).get("/").text
    at_tag = succeeded(c, start(c, "mono", "site", ref="v1.0.0"))
    at_commit = succeeded(c, start(c, "mono", "site", ref=first))
    assert at_tag["commit"] == at_commit["commit"] == first
    assert at_tag["artifact"] == at_commit["artifact"]  # same tree, same bytes, same digest
    assert at_tag["artifact"] != on_branch["artifact"]


def test_a_rebuild_with_unchanged_dependencies_reuses_the_caches(build_server):
    c = build_server.client
    component(c, "apps", "again")
    first = succeeded(c, upload(c, "apps", "again", APPS / "flask-procfile"))
    second = succeeded(c, upload(c, "apps", "again", APPS / "flask-procfile"))
    log = log_text(c, second["id"])
    assert "reusing its lock" in log and "using the cached Python environment" in log
    assert first["artifact"] == second["artifact"]  # reproducible: same source, same artifact
    base = "/organizations/default/projects/apps/components/again/builds"
    page = c.get(base, params={"limit": 1}).json()
    assert [b["id"] for b in page["items"]] == [second["id"]] and page["before"] == second["number"]
    older = c.get(base, params={"limit": 1, "before": page["before"]}).json()
    assert [b["id"] for b in older["items"]] == [first["id"]] and "before" not in older


def test_artifact_download_is_verifiable_and_scoped_to_its_project(build_server):
    c = build_server.client
    component(c, "apps", "dl", {"type": "web-app"})
    info = succeeded(c, upload(c, "apps", "dl", APPS / "static-site"))
    r = c.get(f"/organizations/default/projects/apps/artifacts/{info['artifact']}")
    assert r.status_code == 200 and r.headers["x-cellplane-digest"] == info["artifact"]
    assert "sha256:" + hashlib.sha256(r.content).hexdigest() == info["artifact"]
    component(c, "other", "x")
    r = c.get(f"/organizations/default/projects/other/artifacts/{info['artifact']}")
    assert r.status_code == 404 and r.json()["error"]["details"][0]["field"] == "digest"
    assert c.get("/organizations/default/projects/apps/artifacts/sha256:" + "z" * 64).status_code == 422


# -- scans and policy ----------------------------------------------------------------------------------------------


def test_a_leaked_key_fails_the_build_under_the_default_policy(build_server):
    c = build_server.client
    component(c, "apps", "leaky")
    info = wait(c, upload(c, "apps", "leaky", APPS / "leaky"))
    assert info["state"] == "failed" and "secret" in info["error"]
    secrets = [f for f in info["findings"] if f["kind"] == "secret"]
    assert secrets and secrets[0]["file"] == "config.py"
    values = [line.split("=", 1)[1].strip().strip("\"'")
              for line in (APPS / "leaky" / "config.py").read_text().splitlines() if line.startswith("AWS_")]
    assert len(values) == 3
    shown, log = json.dumps(info), log_text(c, info["id"])
    for value in values[:2]:  # the key id and the secret key: never echoed back, by any scanner
        assert value not in shown and value not in log


def test_a_project_policy_can_let_secrets_through(build_server):
    c = build_server.client
    r = c.post("/apply", json={"documents": [
        {"apiVersion": "cellplane.dev/v1alpha1", "kind": "Project",
         "metadata": {"name": "lenient", "organization": "default"},
         "spec": {"buildPolicy": {"failOn": {"secrets": False}}}}]})
    assert r.status_code == 200, r.text
    component(c, "lenient", "leaky")
    info = succeeded(c, upload(c, "lenient", "leaky", APPS / "leaky"))
    assert any(f["kind"] == "secret" for f in info["findings"])  # still reported


def test_a_critical_vulnerability_in_the_offline_database_fails_the_build(build_server, tmp_path):
    c = build_server.client
    (build_server.osv / "six-test.json").write_text(json.dumps({
        "id": "CELLPLANE-TEST-SIX", "summary": "test advisory against every version of six",
        "affected": [{"package": {"ecosystem": "PyPI", "name": "six"},
                      "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}]}]}],
        "database_specific": {"severity": "CRITICAL"}}))
    app = tmp_path / "uses-six"
    app.mkdir()
    (app / "requirements.txt").write_text("six\n")
    (app / "app.py").write_text("import six\nprint(six.__version__)\n")
    component(c, "apps", "six")
    info = wait(c, upload(c, "apps", "six", app))
    assert info["state"] == "failed", failed_why(c, info)
    assert "CELLPLANE-TEST-SIX" in info["error"]
    assert [f["severity"] for f in info["findings"] if f["kind"] == "vulnerability"] == ["critical"]


def test_failing_unit_tests_fail_the_build(build_server):
    c = build_server.client
    component(c, "apps", "untested", {"type": "web-app", "build": {"test": "echo 'test_it FAILED'; exit 3"}})
    info = wait(c, upload(c, "apps", "untested", APPS / "static-site"))
    assert info["state"] == "failed" and "unit-tests" in info["error"]
    assert "test_it FAILED" in log_text(c, info["id"])


# -- limits: timeout, cancel, memory -------------------------------------------------------------------------------


def test_a_build_past_its_timeout_is_killed_with_everything_it_started(build_server):
    c = build_server.client
    component(c, "apps", "slow", {"type": "web-app", "build": {
        "command": "setsid sleep 7771 & sleep 7772 & sleep 7773", "timeoutSeconds": 5}})
    info = wait(c, upload(c, "apps", "slow", APPS / "static-site"))
    assert info["state"] == "timed-out", failed_why(c, info)
    assert "5s" in info["error"]
    for marker in ("sleep 7771", "sleep 7772", "sleep 7773"):
        assert processes_matching(marker) == [], marker


def test_cancel_stops_a_running_build(build_server):
    s = build_server.server
    c = build_server.client
    component(c, "apps", "cancelme", {"type": "web-app", "build": {"command": "sleep 7781"}})
    info = upload(c, "apps", "cancelme", APPS / "static-site")
    for _ in range(200):
        if processes_matching("sleep 7781"):
            break
        time.sleep(0.1)
    r = run_cli(s, "build", "cancel", info["id"])
    assert r.returncode == 0 and "cancelled" in r.stdout, r.stderr
    assert wait(c, info)["state"] == "cancelled"
    assert processes_matching("sleep 7781") == []
    r = run_cli(s, "build", "cancel", info["id"])
    assert r.returncode != 0 and "already cancelled" in r.stderr


def test_a_build_over_the_memory_cap_is_stopped(build_server):
    # two processes of 700 MiB each: under the per-process limit, over the build's cap of 1024 MiB together
    hog = "python3 -c \"import time; b = bytearray(700 * 2**20); b[::4096] = b'x' * len(b[::4096]); time.sleep(60)\""
    c = build_server.client
    component(c, "apps", "hog", {"type": "web-app", "build": {"command": f"{hog} & {hog} & wait"}})
    info = wait(c, upload(c, "apps", "hog", APPS / "static-site"))
    assert info["state"] == "failed" and "more than 1024 MiB" in info["error"], failed_why(c, info)
    assert processes_matching("bytearray(700") == []


def test_one_process_cannot_map_more_than_the_cap(build_server):
    c = build_server.client
    component(c, "apps", "greedy", {"type": "web-app", "build": {
        "command": "python3 -c \"b = bytearray(1100 * 2**20)\""}})
    info = wait(c, upload(c, "apps", "greedy", APPS / "static-site"))
    assert info["state"] == "failed" and "MemoryError" in info["error"], failed_why(c, info)


# -- bad input ----------------------------------------------------------------------------------------------------


def _member(name: str, type_: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = type_, linkname
    return info


@pytest.mark.parametrize(("members", "problem"), [
    ([(_member("../evil.txt"), b"x")], "../evil.txt"),
    ([(_member("/etc/evil.txt"), b"x")], "/etc/evil.txt"),
    ([(_member("out", tarfile.SYMTYPE, "/etc"), None), (_member("out/passwd"), b"x")], "out"),
    ([(_member("dev", tarfile.CHRTYPE), None)], "dev"),
])
def test_malicious_uploads_are_refused_and_create_nothing(build_server, members, problem, tmp_path):
    c = build_server.client
    component(c, "apps", "target")
    before = c.get("/organizations/default/projects/apps/components/target/builds").json()["items"]
    for m, d in members:
        if d is not None:
            m.size = len(d)
    body = tarball(members)
    r = c.post("/organizations/default/projects/apps/components/target/builds", content=body,
               headers={"Content-Type": "application/gzip"})
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["details"][0]["field"] == "archive" and problem in error["message"]
    assert c.get("/organizations/default/projects/apps/components/target/builds").json()["items"] == before
    assert not Path("/etc/evil.txt").exists()


def test_an_upload_over_the_size_limit_is_refused(build_server):
    c = build_server.client
    component(c, "apps", "big")
    r = c.post("/organizations/default/projects/apps/components/big/builds", content=b"\x1f\x8b" + b"0" * (101 << 20),
               headers={"Content-Type": "application/gzip"})
    assert r.status_code == 413 and r.json()["error"]["details"][0]["field"] == "archive"


def test_bad_build_requests_get_clear_errors(build_server):
    c = build_server.client
    base = "/organizations/default/projects/apps/components"
    component(c, "apps", "nosource")
    r = c.post(f"{base}/nosource/builds", json={})
    assert r.status_code == 422 and r.json()["error"]["details"][0]["field"] == "source.repository"
    r = c.post(f"{base}/nosource/builds", json={"track": "bad track"})
    assert r.status_code == 422 and r.json()["error"]["details"][0]["field"] == "track"
    r = c.post(f"{base}/nosource/builds", json={"ref": "--upload-pack=evil"})
    assert r.status_code == 422 and r.json()["error"]["details"][0]["field"] == "ref"
    r = c.post(f"{base}/nosource/builds", json={"colour": "red"})
    assert r.status_code == 422 and r.json()["error"]["details"][0]["field"] == "colour"
    assert c.post(f"{base}/missing/builds", json={}).status_code == 404
    assert c.get("/organizations/default/builds/b-000000000000").status_code == 404
    assert c.get(f"{base}/nosource/builds").json()["items"] == []
    r = run_cli(build_server.server, "build", "nosource", "--project", "apps")
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1 and "source.repository" in r.stderr


def test_a_bad_git_source_fails_the_build_with_gits_reason(build_server, tmp_path):
    c = build_server.client
    component(c, "apps", "gone", {"source": {"repository": f"file://{tmp_path}/no-such-repo"}})
    info = wait(c, start(c, "apps", "gone"))
    assert info["state"] == "failed" and "git clone" in info["error"]
    assert [s["state"] for s in info["steps"]] == ["failed"]


def test_deleting_a_component_deletes_its_builds(build_server):
    c = build_server.client
    component(c, "apps", "doomed", {"type": "web-app"})
    info = succeeded(c, upload(c, "apps", "doomed", APPS / "static-site"))
    assert c.delete("/organizations/default/projects/apps/components/doomed").status_code == 200
    assert c.get(f"/organizations/default/builds/{info['id']}").status_code == 404


# -- webhooks -----------------------------------------------------------------------------------------------------


def _push(c, url, secret, payload, event="push", signature=None):
    body = json.dumps(payload).encode()
    sig = signature or "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return c.post(url.removeprefix("/api/v1"), content=body,
                  headers={"X-Hub-Signature-256": sig, "X-GitHub-Event": event, "Content-Type": "application/json"})


def test_git_push_webhook(build_server, tmp_path):
    c = build_server.client
    repo = git_repo(tmp_path, APPS / "static-site")
    component(c, "hooks", "site", {"type": "web-app", "source": {"repository": f"file://{repo}", "branch": "main"},
                                   "build": {"autoBuild": True}})
    hook = c.put("/organizations/default/projects/hooks/components/site/webhook").json()
    secret, url = hook["secret"], hook["url"]
    assert secret.startswith("whsec_") and "secret" not in c.get(
        "/organizations/default/projects/hooks/components/site/webhook").json()
    commit = git(repo, "rev-parse", "HEAD")
    payload = {"ref": "refs/heads/main", "after": commit, "repository": {"default_branch": "main"}}
    anonymous = build_server.server.client(token="")

    r = _push(anonymous, url, secret, payload, signature="sha256=" + "0" * 64)
    assert r.status_code == 401 and r.json()["error"]["details"][0]["field"] == "header.X-Hub-Signature-256"
    r = _push(anonymous, url, "wrong-secret", payload)
    assert r.status_code == 401
    assert c.get("/organizations/default/projects/hooks/components/site/builds").json()["items"] == []

    assert _push(anonymous, url, secret, {"zen": "hi"}, event="ping").json()["queued"] is False
    other = _push(anonymous, url, secret, {**payload, "ref": "refs/heads/feature"}).json()
    assert other["queued"] is False and "builds main" in other["reason"]

    r = _push(anonymous, url, secret, payload)
    assert r.status_code == 200 and r.json()["queued"] is True, r.text
    info = succeeded(c, r.json()["build"])
    assert info["trigger"] == "webhook" and info["commit"] == commit and info["track"] == "main"

    c.post("/apply", json={"documents": [{"apiVersion": "cellplane.dev/v1alpha1", "kind": "Component",
                                          "metadata": {"name": "site", "organization": "default",
                                                       "project": "hooks"},
                                          "spec": {"type": "web-app", "source": {"repository": f"file://{repo}",
                                                                                 "branch": "main"}}}]})
    off = _push(anonymous, url, secret, payload).json()
    assert off["queued"] is False and "auto-build is off" in off["reason"]
    audit = c.get("/audit", params={"limit": 50}).json()["items"]
    assert any(e["action"] == "build.webhook" and e["outcome"] == "denied" for e in audit)


def test_upload_via_cli_excludes_local_clutter(build_server, tmp_path):
    s = build_server.server
    app = tmp_path / "cluttered"
    shutil.copytree(APPS / "static-site", app)
    (app / "node_modules" / "huge").mkdir(parents=True)
    (app / "node_modules" / "huge" / "blob.bin").write_bytes(b"0" * 1024)
    (app / ".git").mkdir()
    run_cli(s, "create", "project", "cli")
    r = run_cli(s, "create", "component", "cluttered", "-p", "cli", "--source", str(app), "--type", "web-app")
    assert r.returncode == 0, r.stderr
    r = run_cli(s, "build", "cluttered", "-p", "cli", "-f", "-o", "json")
    assert r.returncode == 0, r.stderr
    build = json.loads(r.stdout)
    assert build["state"] == "succeeded" and build["trigger"] == "upload"


def test_a_queued_build_waits_for_a_free_worker_and_can_be_cancelled_before_it_starts(build_server):
    c = build_server.client
    component(c, "apps", "busy", {"type": "web-app", "build": {"command": "sleep 7791"}})
    running = [upload(c, "apps", "busy", APPS / "static-site") for _ in range(2)]  # the server runs 2 at once
    deadline = time.monotonic() + 60
    while len(processes_matching("sleep 7791")) < 2:
        assert time.monotonic() < deadline, "the two builds did not start"
        time.sleep(0.1)
    queued = upload(c, "apps", "busy", APPS / "static-site")
    time.sleep(1.5)  # a worker loop or two: still no free worker
    assert c.get(f"/organizations/default/builds/{queued['id']}").json()["state"] == "queued"
    r = c.post(f"/organizations/default/builds/{queued['id']}/cancel")
    assert r.status_code == 200 and r.json()["state"] == "cancelled"
    assert r.json()["error"] == "cancelled before it started"
    for b in running:
        assert c.post(f"/organizations/default/builds/{b['id']}/cancel").status_code == 200
        assert wait(c, b)["state"] == "cancelled"
    audit = c.get("/audit", params={"limit": 200}).json()["items"]
    created = [e for e in audit if e["action"] == "build.create" and e["name"] == "busy"]
    assert len(created) == 3 and all(e["outcome"] == "succeeded" for e in created)  # one event per build


@pytest.mark.skipif(os.geteuid() != 0, reason="mount namespaces need root")
def test_a_build_cannot_see_the_data_directory(build_server):
    data = build_server.server.data_dir
    assert {"master.key", "token.key", "admin.token", "cellplane.db"} <= {p.name for p in data.iterdir()}
    c = build_server.client
    spy = (f"echo BEGIN; ls -a {data} {data / 'builds'}; echo END; "
           f"cat {data / 'master.key'} {data / 'token.key'} {data / 'admin.token'} || echo NOTHING-TO-READ")
    component(c, "apps", "spy", {"type": "web-app", "build": {"command": spy}})
    info = succeeded(c, upload(c, "apps", "spy", APPS / "static-site"))
    lines = log_text(c, info["id"]).splitlines()
    seen = lines[lines.index("BEGIN") + 1:lines.index("END")]
    assert "NOTHING-TO-READ" in lines
    for name in ("master.key", "token.key", "admin.token", "cellplane.db", "cellplane.db-wal"):
        assert name not in seen
    assert info["id"] in seen  # its own build directory is there, alone
    assert [n for n in seen if n.startswith("b-")] == [info["id"]]
    for secret in ("master.key", "token.key", "admin.token"):
        assert (data / secret).read_text().strip().split(":")[-1] not in "\n".join(lines), secret


def test_webhook_secrets_survive_key_rotation(build_server):
    c = build_server.client
    component(c, "hooks", "rotating", {"type": "web-app"})
    hook = c.put("/organizations/default/projects/hooks/components/rotating/webhook").json()
    r = c.post("/admin/rotate-key")
    assert r.status_code == 200 and r.json()["reencrypted"] >= 1, r.text
    anonymous = build_server.server.client(token="")
    pong = _push(anonymous, hook["url"], hook["secret"], {"zen": "still here"}, event="ping")
    assert pong.status_code == 200 and pong.json()["reason"].startswith("pong"), pong.text


def test_a_control_plane_that_stops_fails_its_running_builds_and_leaves_nothing_behind(tmp_path):
    server = start_server(tmp_path / "data")
    try:
        c = server.client()
        component(c, "stop", "long", {"type": "web-app", "build": {"command": "sleep 7811"}})
        info = upload(c, "stop", "long", APPS / "static-site")
        deadline = time.monotonic() + 60
        while not processes_matching("sleep 7811"):
            assert time.monotonic() < deadline, "the build did not start"
            time.sleep(0.1)
    finally:
        server.stop()  # SIGTERM: a graceful stop
    assert processes_matching("sleep 7811") == []
    again = start_server(tmp_path / "data")
    try:
        after = again.client().get(f"/organizations/default/builds/{info['id']}").json()
        assert after["state"] == "failed" and after["error"] == "the control plane stopped during the build"
    finally:
        again.stop()
