"""Helpers for build tests: a control plane with a shared dependency cache, builds driven over HTTP,
artifacts run the way a data plane runs them, git repositories made from the fixture apps."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import subprocess
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from cellplane.build.detect import detect
from cellplane.build.plan import BuildFailure
from liveserver import CELLPLANE, LiveServer, doc, free_port, start_server

APPS = Path(__file__).parent / "fixtures" / "apps"
OSV = Path(__file__).parent / "fixtures" / "osv"
TERMINAL = ("succeeded", "failed", "cancelled", "timed-out")


@pytest.fixture(scope="session")
def build_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One dependency cache for every build test: each package is downloaded once per test run."""
    return tmp_path_factory.mktemp("build-cache")


@dataclass
class BuildServer:
    server: LiveServer
    cache: Path
    osv: Path

    @property
    def client(self) -> httpx.Client:
        return self.server.client()


@pytest.fixture(scope="module")
def server_env() -> dict[str, str]:
    """More environment for the module's control plane (a test module overrides this fixture)."""
    return {}


@pytest.fixture(scope="module")
def build_server(tmp_path_factory: pytest.TempPathFactory, build_cache: Path,
                 server_env: dict[str, str]) -> Iterator[BuildServer]:
    osv = tmp_path_factory.mktemp("osv")
    for f in OSV.glob("*.json"):
        shutil.copy(f, osv / f.name)
    server = start_server(tmp_path_factory.mktemp("cp-builds") / "data",
                          env={"CELLPLANE_CACHE_DIR": str(build_cache), "CELLPLANE_OSV_DATABASE": str(osv),
                               "CELLPLANE_BUILD_MEMORY": "1024", "CELLPLANE_BUILD_WORKERS": "2", **server_env})
    built = BuildServer(server, build_cache, osv)
    try:
        yield built
    finally:
        built.server.stop()  # a test may have replaced it (a restarted control plane)


def component(c: httpx.Client, project: str, name: str, spec: dict[str, Any] | None = None) -> None:
    """Apply a component, creating its project first when it does not exist yet."""
    docs = [doc("Component", name, spec or {}, organization="default", project=project)]
    if c.get(f"/organizations/default/projects/{project}").status_code == 404:
        docs.insert(0, doc("Project", project, organization="default"))
    r = c.post("/apply", json={"documents": docs})
    assert r.status_code == 200, r.text


def upload(c: httpx.Client, project: str, name: str, directory: Path, **params: Any) -> dict[str, Any]:
    from cellplane.build.archive import default_exclude, pack

    buf = directory.parent / f".{directory.name}-upload.tar.gz"
    pack(directory, buf, exclude=default_exclude)
    try:
        r = c.post(f"/organizations/default/projects/{project}/components/{name}/builds", content=buf.read_bytes(),
                   headers={"Content-Type": "application/gzip"}, params=params)
    finally:
        buf.unlink()
    assert r.status_code == 201, r.text
    return r.json()


def start(c: httpx.Client, project: str, name: str, **body: Any) -> dict[str, Any]:
    r = c.post(f"/organizations/default/projects/{project}/components/{name}/builds", json=body)
    assert r.status_code == 201, r.text
    return r.json()


def wait(c: httpx.Client, build: dict[str, Any], timeout: float = 300) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        info = c.get(f"/organizations/default/builds/{build['id']}").json()
        if info["state"] in TERMINAL:
            return info
        assert time.monotonic() < deadline, f"build {build['id']} still {info['state']} after {timeout}s"
        time.sleep(0.3)


def log_text(c: httpx.Client, build_id: str) -> str:
    lines, after = [], -1
    while True:
        page = c.get(f"/organizations/default/builds/{build_id}/logs", params={"after": after}).json()
        if not page["items"]:
            return "\n".join(lines)
        lines += [i["line"] for i in page["items"]]
        after = page["next"]


def failed_why(c: httpx.Client, info: dict[str, Any]) -> str:
    return f"{info['state']}: {info.get('error')}\n{log_text(c, info['id'])[-4000:]}"


@dataclass
class Running:
    process: subprocess.Popen[str]
    port: int
    base: str

    def get(self, path: str = "/", **kwargs: Any) -> httpx.Response:
        return httpx.get(self.base + path, timeout=10, **kwargs)


@pytest.fixture
def run_artifact(build_server: BuildServer) -> Iterator[Any]:
    """Start ``cellplane artifact run`` for a digest, wait for HTTP, stop the whole process group afterwards."""
    started: list[Running] = []

    def _run(project: str, digest: str, port: int | None = None, path: str = "/") -> Running:
        port = port or free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("CELLPLANE_")}
        env.update({"CELLPLANE_SERVER": build_server.server.url, "CELLPLANE_TOKEN": build_server.server.admin_token,
                    "CELLPLANE_CACHE_DIR": str(build_server.cache),
                    "CELLPLANE_CONFIG": os.devnull + ".cellplane-test-none"})
        log = build_server.cache.parent / f"run-{digest[7:19]}-{port}.log"
        process = subprocess.Popen([str(CELLPLANE), "artifact", "run", digest, "--project", project,
                                    "--port", str(port)], env=env, stdout=log.open("w"),
                                   stderr=subprocess.STDOUT, text=True, start_new_session=True)
        running = Running(process, port, f"http://127.0.0.1:{port}")
        started.append(running)
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                raise AssertionError(f"the artifact exited with {process.returncode}:\n{log.read_text()}")
            try:
                if running.get(path).status_code < 500:
                    return running
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"the artifact did not answer within 120s:\n{log.read_text()}"
            time.sleep(0.2)

    yield _run
    for r in started:
        with_group(r.process.pid, signal.SIGTERM)
        try:
            r.process.wait(10)
        except subprocess.TimeoutExpired:
            with_group(r.process.pid, signal.SIGKILL)
            r.process.wait()


def with_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)


def git_repo(tmp: Path, source: Path, branch: str = "main") -> Path:
    """A git repository holding a copy of ``source``, committed on ``branch``."""
    repo = tmp / f"repo-{source.name}"
    shutil.copytree(source, repo)
    git(repo, "init", "-q", "-b", branch)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "initial")
    return repo


def git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.com"}
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True,
                          env=env).stdout.strip()


def processes_matching(marker: str) -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter(["cmdline", "status"]):
        try:
            if p.info["status"] != psutil.STATUS_ZOMBIE and marker in " ".join(p.info["cmdline"] or []):
                found.append(p)
        except psutil.Error:
            continue
    return found


def tarball(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for info, data in members:
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


# -- Java ------------------------------------------------------------------------------------------------------------

WRAPPER_PLUGIN = "org.apache.maven.plugins:maven-wrapper-plugin:3.3.4:wrapper"


@pytest.fixture(scope="module")
def jdk() -> None:
    """Java builds need the machine's JDK and Maven (``make buildtools`` installs them): a failure under CI, a skip
    elsewhere."""
    missing = [tool for tool in ("java", "javac", "mvn") if not shutil.which(tool)]
    if missing:
        message = f"Java builds need {', '.join(missing)} (make buildtools installs them)"
        if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


@pytest.fixture(scope="module")
def go_installed() -> None:
    """Go builds need the machine's Go (``make buildtools`` installs it): a failure under CI, a skip elsewhere."""
    from cellplane.build.languages.golang import go_binary

    if go_binary(None) is None:
        message = "Go is not installed (make buildtools installs it)"
        if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


def with_maven_wrapper(source: Path, cache: Path) -> Path:
    """Generate the Maven wrapper's ``mvnw`` script in ``source`` (``mvn -N wrapper:wrapper``, the plugin from Maven
    Central into the build cache's Maven repository), as a project that keeps its wrapper has it; never committed."""
    env = {**os.environ, "MAVEN_OPTS": f"-Dmaven.repo.local={cache / 'maven' / 'repository'}"}
    out = subprocess.run(["mvn", "-B", "-q", "-N", WRAPPER_PLUGIN, "-Dmaven=3.9.9", "-Dtype=only-script"],
                         cwd=source, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0 and (source / "mvnw").is_file(), out.stdout + out.stderr
    return source


# -- detection -------------------------------------------------------------------------------------------------------


def tree(root: Path, files: dict[str, str]) -> Path:
    """Write ``files`` (relative path -> text) under ``root`` and return it."""
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def detect_failure(source: Path, build: dict[str, Any] | None = None, component_type: str = "service"
                   ) -> BuildFailure:
    """The ``BuildFailure`` detecting ``source`` raises (the test fails when it raises none)."""
    with pytest.raises(BuildFailure) as info:
        detect(source, build or {}, component_type)
    return info.value
