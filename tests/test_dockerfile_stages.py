"""Multi-stage Dockerfiles without Docker: build stages on the machine's toolchains, COPY --from, and the last
stage mapped onto what it is (a Go or other native binary, a jar on a JRE, static files behind nginx).

The translation tests run in this process (shell steps executed for real where a later stage copies what
they made); the end-to-end tests build the fixture apps through a real control plane, deploy them on the
local data plane and call them through the gateway."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from buildkit import APPS, log_text
from cellplane.build import toolchains
from cellplane.build.baseimages import classify
from cellplane.build.dockerfile import prepare
from cellplane.build.plan import BuildFailure, Plan
from conftest import _in_ci
from dataplanekit import AgentProcess, build_app, deploy, service, wait_state

pytestmark = pytest.mark.timeout(900)


def _require(tool: str) -> None:
    if toolchains.find(tool) is None:
        if _in_ci():
            pytest.fail(f"{tool} is not installed (scripts/ensure-build-tools.sh should have installed it)")
        pytest.skip(f"{tool} is not installed")


@dataclass
class Hooks:
    """Runs a Dockerfile's steps the way the build runner does: shell steps with the toolchains' shared caches."""

    cache: Path
    execute: bool = True
    calls: list[tuple[Any, ...]] = field(default_factory=list)

    def pip(self, inputs: list[str], packages: list[str], line: int) -> None:
        self.calls.append(("pip", inputs, packages, line))

    def npm(self, cwd: Path, install: str, line: int) -> None:
        self.calls.append(("npm", cwd, install, line))

    def shell(self, cwd: Path, command: str, env: dict[str, str], line: int) -> None:
        self.calls.append(("shell", cwd, command, dict(env), line))
        if self.execute:
            tools = toolchains.build_env(self.cache, os.environ.get("PATH", "/usr/bin:/bin"))
            subprocess.run(["/bin/sh", "-c", command], cwd=cwd, env={**os.environ, **tools, **env}, check=True)

    def lines(self) -> list[int]:
        return [call[-1] for call in self.calls]


@dataclass
class Build:
    context: Path
    work: Path
    hooks: Hooks

    def write(self, rel: str, text: str = "") -> Path:
        path = self.context / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def prepare(self, dockerfile: str | None = None) -> Plan:
        if dockerfile is not None:
            self.write("Dockerfile", dockerfile)
        return prepare(self.context / "Dockerfile", self.context, self.work, self.hooks)

    def fails(self, dockerfile: str) -> str:
        with pytest.raises(BuildFailure) as caught:
            self.prepare(dockerfile)
        assert caught.value.where == "Dockerfile"
        return str(caught.value)


@pytest.fixture
def build(tmp_path: Path, build_cache: Path) -> Build:
    context, work = tmp_path / "src", tmp_path / "work"
    context.mkdir()
    work.mkdir()
    return Build(context, work.resolve(), Hooks(build_cache))


def fixture(build: Build, app: str) -> None:
    shutil.rmtree(build.context)
    shutil.copytree(APPS / app, build.context)


# --------------------------------------------------------------------------------------------
# Base images


@pytest.mark.parametrize(
    ("image", "kind"),
    [
        ("golang:1.22-alpine", "go"),
        ("registry.example.com/mirror/golang:1.22", "go"),
        ("maven:3.9-eclipse-temurin-17", "maven"),
        ("gradle:8-jdk17", "gradle"),
        ("eclipse-temurin:21-jdk", "jdk"),
        ("eclipse-temurin:17-jre-alpine", "jre"),
        ("amazoncorretto:17", "jdk"),
        ("gcr.io/distroless/java17-debian12", "jre"),
        ("gcr.io/distroless/static-debian12:nonroot", "os"),
        ("scratch", "os"),
        ("alpine:3.20", "os"),
        ("ubuntu:24.04", "os"),
        ("nginx:1.27-alpine", "web"),
        ("nginxinc/nginx-unprivileged:1.27", "web"),
        ("httpd:2.4", "web"),
        ("caddy:2", "web"),
        ("node:20", "node"),
        ("python:3.12-slim", "python"),
        ("someone/nginx:latest", None),
        ("mcr.microsoft.com/dotnet/aspnet:8.0", None),
    ],
)
def test_a_base_image_is_known_by_its_kind(image: str, kind: str | None) -> None:
    found = classify(image)
    assert (found.kind if found else None) == kind


# --------------------------------------------------------------------------------------------
# Stages: which, in what order, and COPY --from


def test_stages_are_built_in_dependency_order_and_unneeded_ones_are_skipped(build: Build) -> None:
    plan = build.prepare(
        "FROM node:20 AS one\n"  # 1
        "RUN mkdir -p /out && echo one > /out/one.txt\n"  # 2
        "FROM node:20 AS unused\n"  # 3
        "RUN echo never\n"  # 4
        "FROM node:20 AS two\n"  # 5
        "COPY --from=one /out/one.txt /in/\n"  # 6
        "RUN mkdir -p /out && cp /in/one.txt /out/two.txt\n"  # 7
        "FROM alpine:3.20\n"  # 8
        "COPY --from=two /out/two.txt /srv/\n"  # 9
        "COPY --from=0 /out/*.txt /srv/first/\n"  # 10
        'CMD ["/bin/cat", "/srv/two.txt"]\n'
    )
    assert build.hooks.lines() == [2, 2, 7, 7]  # each simple command is a step
    assert (build.work / "srv" / "two.txt").read_text() == "one\n"
    assert (build.work / "srv" / "first" / "one.txt").read_text() == "one\n"
    assert "stage 'unused' (line 3) is not needed by the last stage: skipped" in plan.notes
    assert "stage 'one' (line 1, node:20) built on this machine's toolchain" in plan.notes
    stage_dir = build.hooks.calls[0][1]
    assert not stage_dir.is_relative_to(build.work)  # a build stage has a directory of its own


def test_copy_from_a_stage_defined_later_or_from_an_image_fails_with_one_line(build: Build) -> None:
    message = build.fails("FROM alpine AS a\nCOPY --from=b /x /x\nFROM alpine AS b\nFROM alpine\nCOPY --from=a /x /x\n")
    assert message == (
        "Dockerfile line 2: COPY --from=b names the stage 'b' (line 3), which is not defined before this one"
    )
    message = build.fails("FROM alpine\nCOPY --from=busybox:1.36 /bin/busybox /bin/\n")
    assert message.startswith("Dockerfile line 2: COPY --from=busybox:1.36 copies from the image busybox:1.36, which "
                              "cannot be pulled without Docker")


def test_copy_from_names_what_the_stage_did_not_produce_but_system_files_are_the_machines(build: Build) -> None:
    message = build.fails("FROM golang:1.22 AS build\nWORKDIR /src\nFROM scratch\nCOPY --from=build /out/app /app\n")
    assert message == "Dockerfile line 4: COPY --from: the stage 'build' did not produce /out/app"
    plan = build.prepare(
        "FROM golang:1.22 AS build\nFROM scratch\n"
        "COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/\n"
    )
    assert any(note.startswith("COPY --from=build /etc/ssl/certs/ca-certificates.crt (line 3) skipped")
               for note in plan.notes)


def test_arg_before_the_first_from_names_the_images_and_from_platform_is_noted(build: Build) -> None:
    plan = build.prepare(
        "ARG BASE=alpine\nARG TAG=3.20\nFROM --platform=$BUILDPLATFORM node:20 AS b\nRUN echo hi > /x\n"
        "FROM ${BASE}:${TAG}\nCOPY --from=b /x /x\nCMD [\"/bin/true\"]\n"
    )
    assert plan.reason == "Dockerfile at Dockerfile (base image alpine:3.20, last stage)"
    assert "FROM --platform (line 3) ignored: stages build for this machine" in plan.notes


# --------------------------------------------------------------------------------------------
# Build tools belong to their images


def test_a_build_tool_needs_a_stage_of_its_image(build: Build) -> None:
    message = build.fails("FROM node:20 AS b\nRUN go build ./...\nFROM alpine\nCOPY --from=b /x /x\n")
    assert message == "Dockerfile line 2: RUN go needs a golang:* image as the stage's base image, not node:20"
    message = build.fails("FROM golang:1.22\nRUN go run .\n")
    assert message.startswith("Dockerfile line 2: RUN go run is not supported without Docker (supported: go build,")


def test_gradle_that_the_machine_lacks_is_one_clear_line(build: Build, monkeypatch: pytest.MonkeyPatch,
                                                         tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    message = build.fails("FROM gradle:8-jdk17 AS b\nWORKDIR /src\nRUN gradle build\n")
    assert message == ("Dockerfile line 3: RUN gradle needs Gradle, which is not installed on this machine "
                       "(install it, or build the app outside its Dockerfile)")


def test_a_wrapper_must_be_copied_before_it_runs(build: Build) -> None:
    message = build.fails("FROM eclipse-temurin:17-jdk\nWORKDIR /src\nRUN ./mvnw -B package\n")
    assert message == "Dockerfile line 3: RUN ./mvnw: there is no mvnw in /src at this point (COPY it first)"


def test_build_tools_share_the_build_caches(build_cache: Path) -> None:
    _require("go")
    env = toolchains.build_env(build_cache, "/nowhere")
    assert env["GOMODCACHE"] == str(build_cache / "go" / "mod") and env["GOCACHE"] == str(build_cache / "go" / "build")
    assert env["MAVEN_OPTS"] == f"-Dmaven.repo.local={build_cache / 'maven' / 'repository'}"
    assert env["GOTOOLCHAIN"] == "local" and env["PATH"].endswith(":/nowhere")
    assert shutil.which("go", path=env["PATH"]) is not None  # found even where PATH lacks it


def test_maven_steps_run_in_a_maven_stage(build: Build) -> None:
    _require("mvn")
    build.hooks.execute = False
    build.write("pom.xml", "<project/>")
    build.write("src/main/java/App.java", "class App {}")
    build.write("target/app.jar", "")  # what `mvn package` would make (the steps are only recorded here)
    plan = build.prepare(
        "FROM maven:3.9-eclipse-temurin-17\nWORKDIR /src\nCOPY pom.xml .\nRUN mvn -B -q dependency:go-offline\n"
        "COPY . .\nRUN mvn -B package -DskipTests\nCMD [\"java\", \"-jar\", \"/src/target/app.jar\"]\n"
    )
    assert [call[2] for call in build.hooks.calls] == ["mvn -B -q dependency:go-offline", "mvn -B package -DskipTests"]
    assert (plan.language, plan.workdir, plan.run) == ("java", "src", "java -jar target/app.jar")


def test_a_maven_wrapper_runs_the_machines_maven_and_a_gradle_wrapper_needs_gradle(
        build: Build, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _require("mvn")
    build.hooks.execute = False
    build.write("mvnw", "#!/bin/sh\n").chmod(0o755)
    build.write("gradlew", "#!/bin/sh\n").chmod(0o755)
    plan = build.prepare("FROM eclipse-temurin:17-jdk\nWORKDIR /src\nCOPY . .\nRUN ./mvnw -B package\n")
    assert [call[2] for call in build.hooks.calls] == ["mvn -B package"]
    assert "RUN ./mvnw (line 4) runs the machine's mvn" in plan.notes
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    message = build.fails("FROM eclipse-temurin:17-jdk\nWORKDIR /src\nCOPY . .\nRUN ./gradlew build\n")
    assert message == ("Dockerfile line 4: RUN ./gradlew needs Gradle: the wrapper downloads it from "
                       "services.gradle.org, which builds cannot reach; install Gradle on the build machine")


def test_go_cross_compilation_is_dropped_with_a_note(build: Build) -> None:
    build.hooks.execute = False
    plan = build.prepare("FROM golang:1.22\nWORKDIR /src\nRUN GOARCH=riscv64 CGO_ENABLED=0 go build -o /app .\n")
    (_, _, command, env, _) = build.hooks.calls[0]
    assert command == f"go build -o {build.work}/app ."
    assert "GOARCH" not in env and env["CGO_ENABLED"] == "0" and env["GOPATH"] == str(build.work / "go")
    assert "RUN (line 3): GOARCH=riscv64 ignored: the binary is built for this machine" in plan.notes


# --------------------------------------------------------------------------------------------
# System packages, HEALTHCHECK and LABEL


def test_system_packages_the_runtime_does_not_need_are_noted_and_others_refused(build: Build) -> None:
    plan = build.prepare(
        "FROM debian:12-slim\n"
        "RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl=7.88* "
        "&& rm -rf /var/lib/apt/lists/*\n"
        "RUN apk add --no-cache --virtual .deps tzdata tini && update-ca-certificates\n"
    )
    assert "RUN apt-get install ca-certificates curl (line 2) skipped: the machine's own are used" in plan.notes
    assert "RUN apk add tzdata tini (line 3) skipped: the machine's own are used" in plan.notes
    message = build.fails("FROM alpine:3.20\nRUN apk add --no-cache ca-certificates git\n")
    assert message.startswith("Dockerfile line 2: RUN apk add git is not supported without Docker: system packages "
                              "cannot be installed; only ca-certificates, curl, dumb-init, tini, tzdata, wget are")


@pytest.mark.parametrize(
    ("healthcheck", "readiness"),
    [
        ("--interval=10s --timeout=3s --retries=5 CMD curl -fsS http://localhost:8080/healthz || exit 1",
         {"path": "/healthz", "timeoutSeconds": 3.0, "failureThreshold": 5}),
        ('CMD ["wget", "-qO-", "http://127.0.0.1/ready?full=1"]', {"path": "/ready?full=1"}),
        ("CMD wget -q --spider http://localhost:3000", {"path": "/"}),
        ("CMD pg_isready", None),
        ("NONE", None),
    ],
)
def test_healthcheck_of_a_local_url_becomes_the_readiness_probe(build: Build, healthcheck: str,
                                                                readiness: dict[str, Any] | None) -> None:
    plan = build.prepare(f"FROM node:20\nHEALTHCHECK {healthcheck}\nCMD node server.js\n")
    assert plan.readiness == readiness
    if readiness is None and healthcheck != "NONE":
        assert any("HEALTHCHECK (line 2) not used" in note for note in plan.notes)


def test_the_data_plane_probes_the_healthcheck_path_when_the_component_declares_no_readiness(tmp_path: Path) -> None:
    from cellplane.dataplane.launchspec import manifest_probe
    from cellplane.dataplane.probes import ProbeSpec

    (tmp_path / "manifest.json").write_text('{"readiness": {"path": "/healthz", "timeoutSeconds": 3.0}}')
    assert manifest_probe(tmp_path) == ProbeSpec(path="/healthz", timeout=3.0, failure_threshold=3)
    (tmp_path / "manifest.json").write_text('{"run": "x"}')
    assert manifest_probe(tmp_path) is None  # the default: a TCP connect


def test_labels_are_recorded(build: Build) -> None:
    plan = build.prepare('FROM node:20\nARG V=1.2\nLABEL org.opencontainers.image.version=$V team="pay ments"\n')
    assert plan.labels == {"org.opencontainers.image.version": "1.2", "team": "pay ments"}


# --------------------------------------------------------------------------------------------
# The last stage: what it becomes


def test_a_go_service_from_a_golang_stage_runs_as_its_binary_on_alpine(build: Build) -> None:
    _require("go")
    fixture(build, "go-multistage")
    plan = build.prepare()
    commands = [call[2] for call in build.hooks.calls]
    assert commands[0] == "go mod download"
    assert re.fullmatch(r"go build -trimpath -ldflags=-s -w -o \S+/0-build/out/greeter \.", commands[1].replace(
        "'-ldflags=-s -w'", "-ldflags=-s -w")), commands[1]
    assert (plan.language, plan.workdir, plan.run) == ("go", "", "usr/local/bin/greeter")
    assert plan.language_version == "1.22"  # golang:${GO_VERSION}-alpine, recorded
    assert plan.labels == {"org.opencontainers.image.title": "greeter", "team": "payments"}
    assert plan.readiness == {"path": "/healthz", "timeoutSeconds": 3.0}
    assert plan.port == 8080
    assert sorted(p.name for p in build.work.iterdir()) == ["usr"]  # the binary, not the sources
    assert "stage 'test' (line 11) is not needed by the last stage: skipped" in plan.notes
    assert "RUN apk add ca-certificates tzdata (line 17) skipped: the machine's own are used" in plan.notes


def test_a_single_stage_golang_dockerfile_runs_what_it_built(build: Build) -> None:
    _require("go")
    build.write("go.mod", "module example.com/one\n\ngo 1.22\n")
    build.write("main.go", 'package main\n\nimport "fmt"\n\nfunc main() { fmt.Println("one") }\n')
    plan = build.prepare("FROM golang:1.22\nWORKDIR /app\nCOPY . .\nRUN go build -trimpath -o one .\nCMD [\"./one\"]\n")
    assert (plan.language, plan.workdir, plan.run) == ("go", "app", "./one")
    out = subprocess.run(["/bin/sh", "-c", plan.run], cwd=build.work / "app", capture_output=True, text=True)
    assert out.stdout == "one\n"


def test_distroless_nodejs_runs_node_with_its_cmd(build: Build) -> None:
    build.write("server.js", "")
    plan = build.prepare("FROM gcr.io/distroless/nodejs20-debian12\nWORKDIR /app\nCOPY server.js .\n"
                         'CMD ["server.js"]\n')
    assert (plan.language, plan.run) == ("node", "node server.js")
    plan = build.prepare('FROM python:3.12\nWORKDIR /app\nCOPY server.js .\nCMD ["gunicorn", "app:app"]\n')
    assert plan.run == "gunicorn app:app"  # only distroless images have an implicit ENTRYPOINT


def test_a_native_binary_that_go_did_not_build_is_a_binary(build: Build) -> None:
    build.write("run.sh", "#!/bin/sh\necho hi\n").chmod(0o755)
    plan = build.prepare(
        "FROM golang:1.22 AS build\nCOPY run.sh /out/run.sh\n"
        "FROM gcr.io/distroless/static-debian12\nCOPY --from=build /out/run.sh /usr/bin/run\n"
        'ENTRYPOINT ["/usr/bin/run"]\n'
    )
    assert (plan.language, plan.run) == ("binary", "usr/bin/run")
    assert os.access(build.work / "usr" / "bin" / "run", os.X_OK)


def test_a_jar_built_with_the_jdk_runs_with_java_on_a_jre_image(build: Build) -> None:
    _require("javac")
    build.write("Main.java", 'class Main { public static void main(String[] a) { System.out.println("hi"); } }\n')
    plan = build.prepare(
        "FROM eclipse-temurin:17-jdk AS build\nWORKDIR /src\nCOPY Main.java .\n"
        "RUN mkdir -p /out && javac -d classes Main.java\n"
        "RUN jar --create --file /out/app.jar --main-class Main -C classes .\n"
        "FROM eclipse-temurin:17-jre-alpine\nWORKDIR /app\nCOPY --from=build /out/app.jar app.jar\n"
        'ENTRYPOINT ["/opt/java/openjdk/bin/java", "-jar", "/app/app.jar"]\n'
    )
    assert (plan.language, plan.workdir, plan.run, plan.language_version) == ("java", "app", "java -jar app.jar", "17")
    out = subprocess.run(["/bin/sh", "-c", plan.run], cwd=build.work / plan.workdir, capture_output=True, text=True)
    assert out.stdout == "hi\n", out.stderr


POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>example</groupId><artifactId>hello</artifactId><version>1.0</version>
  <properties><maven.compiler.release>17</maven.compiler.release>
    <project.build.sourceEncoding>UTF-8</project.build.sourceEncoding></properties>
  <build><finalName>hello</finalName><plugins>
    <plugin><artifactId>maven-compiler-plugin</artifactId><version>3.13.0</version></plugin>
    <plugin><artifactId>maven-jar-plugin</artifactId><version>3.4.2</version>
      <configuration><archive><manifest><mainClass>hello.Main</mainClass></manifest></archive></configuration>
    </plugin>
  </plugins></build>
</project>
"""


def test_a_maven_stage_packages_a_jar_that_a_jre_stage_runs(build: Build) -> None:
    _require("mvn")
    build.write("pom.xml", POM)
    build.write("src/main/java/hello/Main.java", 'package hello;\n'
                'public class Main { public static void main(String[] a) { System.out.println("mvn"); } }\n')
    plan = build.prepare(
        "FROM maven:3.9-eclipse-temurin-17 AS build\nWORKDIR /src\nCOPY pom.xml .\nCOPY src ./src\n"
        "RUN mvn -B -q -DskipTests package\n"
        "FROM eclipse-temurin:17-jre\nWORKDIR /app\nCOPY --from=build /src/target/hello.jar app.jar\n"
        'ENTRYPOINT ["java", "-jar", "app.jar"]\n'
    )
    assert (plan.language, plan.run) == ("java", "java -jar app.jar")
    out = subprocess.run(["/bin/sh", "-c", plan.run], cwd=build.work / "app", capture_output=True, text=True)
    assert out.stdout == "mvn\n", out.stderr
    assert (build.hooks.cache / "maven" / "repository" / "org" / "apache" / "maven" / "plugins").is_dir()


def test_distroless_java_runs_the_jar_its_cmd_names(build: Build) -> None:
    build.write("target/app.jar", "not really a jar")
    plan = build.prepare(
        "FROM maven:3.9-eclipse-temurin-17 AS build\nWORKDIR /b\nCOPY target/app.jar .\n"
        'FROM gcr.io/distroless/java17-debian12\nWORKDIR /app\nCOPY --from=build /b/app.jar .\nCMD ["app.jar"]\n'
    )
    assert (plan.language, plan.run) == ("java", "java -jar app.jar")


def test_a_spa_built_with_node_is_served_from_nginx_root_with_fallback(build: Build) -> None:
    build.write("package.json", '{"name": "spa", "scripts": {"build": "node build.js"}}')
    build.write("package-lock.json", '{"name": "spa", "lockfileVersion": 3, "packages": {}}')
    build.write("build.js", "const fs = require('fs'); fs.mkdirSync('dist/assets', {recursive: true});\n"
                            "fs.writeFileSync('dist/index.html', '<h1>spa</h1>');\n"
                            "fs.writeFileSync('dist/assets/app-3f2a.js', 'console.log(1)');\n")
    build.write("nginx.conf", "server { listen 80; root /usr/share/nginx/html;\n"
                              "  location / { try_files $uri $uri/ /index.html; } }\n")
    plan = build.prepare(
        "FROM node:20-alpine AS build\nWORKDIR /app\nCOPY package*.json ./\nRUN npm ci\nCOPY . .\nRUN npm run build\n"
        "FROM nginx:1.27-alpine\nRUN rm /etc/nginx/conf.d/default.conf\n"
        "COPY nginx.conf /etc/nginx/conf.d/default.conf\n"
        "COPY --from=build /app/dist /usr/share/nginx/html\nEXPOSE 80\nCMD [\"nginx\", \"-g\", \"daemon off;\"]\n"
    )
    assert build.hooks.calls[0][0] == "npm" and build.hooks.calls[0][2] == "ci"
    assert (plan.language, plan.workdir, plan.static_root, plan.port, plan.run) == (
        "static", "", "usr/share/nginx/html", None, None)
    assert (build.work / "usr/share/nginx/html/assets/app-3f2a.js").is_file()
    assert any("try_files falls back to /index.html" in note for note in plan.notes)
    assert ("RUN rm (line 8): /etc/nginx/conf.d/default.conf is not in the image's file tree here, nothing to remove"
            in plan.notes)


def test_a_web_server_stage_without_an_index_html_fails(build: Build) -> None:
    build.write("site/about.html", "<p>about</p>")
    message = build.fails("FROM httpd:2.4\nCOPY site/ /usr/local/apache2/htdocs/\n")
    assert message == ("the last stage (httpd:2.4) serves static files, but no index.html was copied to "
                       "/usr/local/apache2/htdocs; COPY the built site there")


# --------------------------------------------------------------------------------------------
# End to end: built by the control plane, deployed on the local data plane, called through the gateway


def _through_gateway(build_server: Any, project: str, name: str) -> str:
    c = build_server.client
    deploy(c, project, name)
    d = wait_state(c, project, name, timeout=180)
    return d["endpoints"][0]["urls"]["external"]


def test_a_go_multi_stage_dockerfile_deploys_and_answers_through_the_gateway(build_server: Any,
                                                                             dataplane: AgentProcess) -> None:
    _require("go")
    c = build_server.client
    info = build_app(c, "stages", "greeter", service(port=8080), app="go-multistage")
    assert info["detection"]["language"] == "go"
    log = log_text(c, info["id"])
    assert "stage 'build' (line 4, golang:1.22-alpine) built on this machine's toolchain" in log
    manifest = c.get(f"/organizations/default/projects/stages/artifacts/{info['artifact']}/manifest").json()
    manifest = manifest["manifest"]
    assert manifest["labels"]["team"] == "payments" and manifest["readiness"]["path"] == "/healthz"
    url = _through_gateway(build_server, "stages", "greeter")
    r = httpx.get(url + "/hello", timeout=10)
    assert r.status_code == 200 and r.json()["app"] == "go-multistage" and r.json()["path"] == "/hello"


def test_a_vite_app_built_with_node_and_served_by_nginx_answers_through_the_gateway(
        build_server: Any, dataplane: AgentProcess) -> None:
    c = build_server.client
    info = build_app(c, "stages", "spa", service(port=8080), app="vite-nginx")
    assert info["detection"]["language"] == "static"
    url = _through_gateway(build_server, "stages", "spa")
    index = httpx.get(url + "/", timeout=10)
    assert index.status_code == 200 and "vite-nginx" in index.text
    route = httpx.get(url + "/orders/42", timeout=10, headers={"accept": "text/html"})
    assert route.status_code == 200 and route.text == index.text  # the SPA fallback
    asset = re.search(r'src="(/assets/index-[\w-]+\.js)"', index.text)
    assert asset, index.text
    script = httpx.get(url + asset.group(1), timeout=10)
    assert script.status_code == 200 and "vite-nginx" in script.text
    assert "immutable" in script.headers["cache-control"]
