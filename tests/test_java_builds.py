"""Java builds through the real control plane, on the machine's JDK and Maven: a Spring Boot REST service with the
Maven wrapper deploys on the local data plane and answers through the gateway; a plain Java task runs to exit 0;
what cannot be built (no Gradle, a newer JDK asked for, two main classes) fails with one line naming the file.

The Maven repository lives in the session's build cache, so each dependency is downloaded once per test run; the
wrapper's ``mvnw`` script is generated here (``mvn -N wrapper:wrapper``), never committed."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from buildkit import APPS, BuildServer, component, failed_why, upload, wait, with_maven_wrapper
from dataplanekit import ORG, AgentProcess, deploy, service, wait_state
from liveserver import run_cli


@pytest.fixture(scope="module")
def spring_source(jdk: None, tmp_path_factory: pytest.TempPathFactory, build_cache: Path) -> Path:
    """The java-spring fixture with its Maven wrapper script generated (Maven Central serves the plugin)."""
    source = tmp_path_factory.mktemp("java") / "java-spring"
    shutil.copytree(APPS / "java-spring", source)
    return with_maven_wrapper(source, build_cache)


def _build(c: httpx.Client, project: str, name: str, spec: dict[str, Any], source: Path) -> dict[str, Any]:
    component(c, project, name, spec)
    return wait(c, upload(c, project, name, source), timeout=600)


def _manifest(c: httpx.Client, project: str, digest: str) -> dict[str, Any]:
    r = c.get(f"{ORG}/projects/{project}/artifacts/{digest}/manifest")
    assert r.status_code == 200, r.text
    return r.json()["manifest"]


def test_a_spring_boot_service_with_the_maven_wrapper_builds_deploys_and_answers_through_the_gateway(
        build_server: BuildServer, dataplane: AgentProcess, spring_source: Path) -> None:
    c = build_server.client
    info = _build(c, "jvm", "greeting", service(port=8080), spring_source)
    assert info["state"] == "succeeded", failed_why(c, info)
    detection = info["detection"]
    assert detection["strategy"] == "java" and detection["language"] == "java"
    assert detection["reason"].startswith("Maven project (pom.xml): ./mvnw package"), detection["reason"]
    assert detection["languageVersion"] == "17"
    assert detection["run"].startswith("java -XX:+UseSerialGC -XX:MaxRAMPercentage=75")
    assert detection["run"].endswith("$JAVA_OPTS -jar greeting-1.0.0.jar --server.port=$PORT")

    manifest = _manifest(c, "jvm", info["artifact"])
    assert manifest["java"]["wrapper"] is True and manifest["java"]["springBoot"] is True
    assert manifest["java"]["command"].startswith("./mvnw -B -q -DskipTests")
    assert manifest["java"]["asked"] == {"version": "17", "where": "pom.xml (java.version)"}
    assert manifest["java"]["pomDigest"].startswith("sha256:")
    pins = {d["name"]: d["version"] for d in manifest["dependencies"] if d["ecosystem"] == "Maven"}
    assert pins["org.springframework.boot:spring-boot"] == "3.5.7"
    assert pins["org.springframework:spring-webmvc"].startswith("6.2.")
    assert "org.apache.tomcat.embed:tomcat-embed-core" in pins

    deploy(c, "jvm", "greeting")
    d = wait_state(c, "jvm", "greeting", timeout=180)
    url = d["endpoints"][0]["urls"]["external"]
    r = httpx.get(url + "/greeting", params={"name": "Choreo"}, timeout=10)
    assert r.status_code == 200 and r.json() == {"message": "Hello, Choreo!"}, r.text
    assert d["replicas"][0]["port"] != 8080  # started on the platform's $PORT, not application.properties' port

    again = _build(c, "jvm", "greeting", service(port=8080), spring_source)
    assert again["state"] == "succeeded", failed_why(c, again)
    assert again["artifact"] == info["artifact"]  # same source, same jar, same artifact digest


def test_a_plain_java_task_builds_and_runs_to_exit_0(build_server: BuildServer, dataplane: AgentProcess,
                                                    jdk: None) -> None:
    c = build_server.client
    info = _build(c, "jvm", "report", {"type": "manual-task"}, APPS / "java-task")
    assert info["state"] == "succeeded", failed_why(c, info)
    assert info["detection"]["reason"].startswith("Maven project (pom.xml): the machine's mvn package")
    assert info["detection"]["languageVersion"] == "17"  # maven.compiler.release = ${release.version}
    assert info["detection"]["run"].endswith("-cp report-1.0.0.jar com.example.report.Report")
    manifest = _manifest(c, "jvm", info["artifact"])
    assert manifest["dependencies"] == [] and manifest["java"]["mainClass"] == "com.example.report.Report"

    deploy(c, "jvm", "report")
    wait_state(c, "jvm", "report", states=("idle",))
    out = run_cli(build_server.server, "run", "report", "--env", "development", "-p", "jvm")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "report total 55" in out.stdout and "report done, exit 0" in out.stdout


def test_a_plain_jar_runs_with_its_runtime_dependencies_copied_beside_it(build_server: BuildServer,
                                                                         dataplane: AgentProcess, jdk: None,
                                                                         tmp_path: Path) -> None:
    source = tmp_path / "with-lib"
    shutil.copytree(APPS / "java-task", source)
    pom = source / "pom.xml"
    pom.write_text(pom.read_text().replace("  <build>", "  <dependencies>\n    <dependency>\n"
                                           "      <groupId>org.apache.commons</groupId>\n"
                                           "      <artifactId>commons-lang3</artifactId>\n"
                                           "      <version>3.17.0</version>\n    </dependency>\n"
                                           "  </dependencies>\n  <build>", 1))
    main = source / "src/main/java/com/example/report/Report.java"
    main.write_text(main.read_text().replace(
        'System.out.println("report total " + total);',
        'System.out.println("report total " + org.apache.commons.lang3.StringUtils.leftPad("" + total, 5, "*"));'))
    c = build_server.client
    info = _build(c, "jvm", "with-lib", {"type": "manual-task"}, source)
    assert info["state"] == "succeeded", failed_why(c, info)
    assert info["detection"]["run"].endswith("-cp 'report-1.0.0.jar:lib/*' com.example.report.Report")
    manifest = _manifest(c, "jvm", info["artifact"])
    assert manifest["dependencies"] == [
        {"ecosystem": "Maven", "name": "org.apache.commons:commons-lang3", "version": "3.17.0"}]

    deploy(c, "jvm", "with-lib")
    wait_state(c, "jvm", "with-lib", states=("idle",))
    out = run_cli(build_server.server, "run", "with-lib", "--env", "development", "-p", "jvm")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "report total ***55" in out.stdout


def _one_line_failure(c: httpx.Client, project: str, name: str, spec: dict[str, Any], source: Path) -> str:
    info = _build(c, project, name, spec, source)
    assert info["state"] == "failed", info
    error = info["error"]
    assert "\n" not in error and str(source) not in error, error
    return str(error)


def test_a_jar_with_two_main_classes_and_no_main_class_is_refused_naming_them(
        build_server: BuildServer, jdk: None, tmp_path: Path) -> None:
    source = tmp_path / "two-mains"
    shutil.copytree(APPS / "java-task", source)
    other = source / "src/main/java/com/example/report/Cleanup.java"
    other.write_text("package com.example.report;\n\npublic final class Cleanup {\n"
                     "    public static void main(String[] args) {\n        System.out.println(\"cleanup\");\n"
                     "    }\n}\n")
    error = _one_line_failure(build_server.client, "jvm", "two-mains", {"type": "manual-task"}, source)
    assert error.startswith("several classes declare main (com.example.report.Cleanup, com.example.report.Report)")
    assert "Main-Class" in error and "build.run" in error


def test_a_compile_error_fails_the_build_with_one_line_naming_the_source_file_and_line(
        build_server: BuildServer, jdk: None, tmp_path: Path) -> None:
    source = tmp_path / "broken"
    shutil.copytree(APPS / "java-task", source)
    main = source / "src/main/java/com/example/report/Report.java"
    main.write_text(main.read_text().replace("int total = 0;", "int total = missing;"))
    error = _one_line_failure(build_server.client, "jvm", "broken", {"type": "manual-task"}, source)
    assert error == ("mvn could not compile src/main/java/com/example/report/Report.java line 11: "
                     "cannot find symbol"), error


def test_a_project_asking_for_a_newer_jdk_than_the_machines_is_refused_in_one_line(
        build_server: BuildServer, jdk: None, tmp_path: Path) -> None:
    source = tmp_path / "newer"
    shutil.copytree(APPS / "java-task", source)
    pom = source / "pom.xml"
    pom.write_text(pom.read_text().replace("<release.version>17</release.version>",
                                           "<release.version>99</release.version>"))
    error = _one_line_failure(build_server.client, "jvm", "newer", {"type": "manual-task"}, source)
    assert error.startswith("pom.xml (maven.compiler.release) asks for Java 99, and the build machine's JDK is "
                            "Java 17"), error


@pytest.fixture
def no_gradle() -> Iterator[None]:
    if shutil.which("gradle"):
        pytest.skip("a gradle is on PATH here: the refusal is for machines without one")
    yield


def test_a_gradle_project_without_gradle_on_the_machine_is_refused_saying_what_is_missing(
        build_server: BuildServer, jdk: None, no_gradle: None, tmp_path: Path) -> None:
    source = tmp_path / "gradle-app"
    (source / "src/main/java/demo").mkdir(parents=True)
    (source / "settings.gradle.kts").write_text('rootProject.name = "demo"\n')
    (source / "build.gradle.kts").write_text(
        'plugins {\n    java\n    id("org.springframework.boot") version "3.5.7"\n}\n\n'
        "java {\n    toolchain {\n        languageVersion = JavaLanguageVersion.of(17)\n    }\n}\n")
    (source / "gradlew").write_text("#!/bin/sh\necho 'a wrapper that is never run' >&2\nexit 1\n")
    (source / "src/main/java/demo/App.java").write_text(
        "package demo;\n\npublic class App {\n    public static void main(String[] args) {\n    }\n}\n")
    c = build_server.client
    error = _one_line_failure(c, "jvm", "gradle-app", service(port=8080), source)
    assert error.startswith("build.gradle.kts: Gradle projects are built with the build machine's gradle, and it "
                            "has none on its PATH"), error
    assert "install Gradle there" in error
    builds = c.get(f"{ORG}/projects/jvm/components/gradle-app/builds").json()["items"]
    assert builds[0]["detection"]["strategy"] == "java" and builds[0]["detection"]["languageVersion"] == "17"
    assert any("gradlew is not run" in note for note in builds[0]["detection"]["notes"])

