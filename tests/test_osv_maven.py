"""Maven pins in the dependency vulnerability scan: Maven's version order (``ComparableVersion``'s rules; every
case below was checked against Maven 3.8.7's own ``ComparableVersion``), OSV's Maven ecosystem matched in
process against the offline fixture (tests/fixtures/osv/osv-maven.json), and one real Java build whose jar runs
with a vulnerable commons-lang3, reported against pom.xml exactly as a Python or Go finding is."""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import pytest

from buildkit import APPS, OSV, BuildServer, component, failed_why, log_text, upload, wait
from cellplane.build import scans
from cellplane.build.osv import MavenVersion, OsvDatabase

# Oldest first: ComparableVersionTest's qualifier and number orders, plus the shapes real artifacts use.
ORDERED = [
    "1-alpha2snapshot", "1-alpha2", "1-alpha-123", "1-beta-2", "1-beta123", "1-m2", "1-m11", "1-rc", "1-cr2",
    "1-rc123", "1-SNAPSHOT", "1", "1-sp", "1-sp2", "1-sp123", "1-abc", "1-def", "1-pom-1", "1-1-snapshot", "1-1",
    "1-2", "1-123", "2.0", "2.0.a", "2-1", "2.0.2", "2.0.123", "2.1.0", "2.1-a", "2.1b", "2.1-c", "2.1-1",
    "2.1.0.1", "2.2", "2.123", "11.a2", "11.a11", "11.b2", "11.b11", "11.m2", "11.m11", "11", "11.a", "11b", "11c",
    "11m", "11.0.1", "11.0.3", "11.0.10",
]
EQUAL = [
    ("1", "1.0.0"), ("1.0-ga", "1"), ("1.0.RELEASE", "1.0"), ("1.0.0.Final", "1"), ("1.0-cr1", "1.0-RC1"),
    ("1.0a1", "1.0-alpha-1"), ("1.0b2", "1.0-beta-2"), ("1.0m3", "1.0-milestone-3"), ("1.0.x1", "1.0-x-1"),
    ("1..1", "1.0.1"),
]


@pytest.mark.parametrize(("older", "newer"), list(itertools.pairwise(ORDERED)))
def test_maven_versions_order_like_maven_s_comparable_version(older: str, newer: str) -> None:
    assert MavenVersion(older) < MavenVersion(newer)
    assert MavenVersion(newer) > MavenVersion(older) and MavenVersion(older) != MavenVersion(newer)


def test_qualifiers_order_alpha_beta_milestone_rc_snapshot_release_sp_then_any_other_word() -> None:
    words = ["1.0-alpha", "1.0-beta", "1.0-milestone", "1.0-rc", "1.0-snapshot", "1.0", "1.0-sp", "1.0-foo"]
    assert sorted(reversed(words), key=MavenVersion) == words


@pytest.mark.parametrize(("left", "right"), EQUAL)
def test_maven_version_aliases_trailing_zeros_and_separators_compare_equal(left: str, right: str) -> None:
    assert MavenVersion(left) == MavenVersion(right) and hash(MavenVersion(left)) == hash(MavenVersion(right))


def test_numeric_segments_compare_as_numbers_not_text() -> None:
    assert MavenVersion("2.17.1") < MavenVersion("2.17.10") < MavenVersion("10.0")
    assert MavenVersion("6.2.12") < MavenVersion("6.2.12.1") and MavenVersion("1.0.0-1") < MavenVersion("1.0.0.1")


@pytest.fixture(scope="module")
def db() -> OsvDatabase:
    return OsvDatabase.load(OSV)


def test_a_maven_advisory_matches_group_and_artifact_inside_its_range_only(db: OsvDatabase) -> None:
    lang = "org.apache.commons:commons-lang3"
    assert [v.id for v in db.match("Maven", lang, "3.17.0")] == ["CELLPLANE-TEST-MAVEN-0001"]
    assert db.match("Maven", lang, "3.17.0")[0].fixed == ("3.18.0",)
    assert db.match("Maven", lang, "3.18.0") == [] and db.match("Maven", lang, "2.6") == []
    assert db.match("Maven", "org.apache.commons:commons-text", "1.10.0") == []
    assert db.match("PyPI", lang, "3.17.0") == []  # the ecosystem is part of the key


def test_a_range_starting_at_a_milestone_covers_the_milestones_and_not_the_previous_line(db: OsvDatabase) -> None:
    tomcat = "org.apache.tomcat.embed:tomcat-embed-core"
    for affected in ("11.0.0-M1", "11.0.0-M26", "11.0.0", "11.0.2"):
        assert [v.id for v in db.match("Maven", tomcat, affected)] == ["CELLPLANE-TEST-MAVEN-0002"], affected
    for safe in ("10.1.48", "11.0.0-alpha-1", "11.0.3", "11.0.10"):
        assert db.match("Maven", tomcat, safe) == [], safe


def test_maven_pins_are_scanned_against_the_build_file_and_blocked_by_the_same_policy(db: OsvDatabase) -> None:
    pins = [("org.apache.commons:commons-lang3", "3.17.0"), ("org.apache.tomcat.embed:tomcat-embed-core", "11.0.1"),
            ("org.springframework:spring-webmvc", "6.2.12")]
    found = scans.scan_dependencies(db, None, None, maven_pins=pins)
    assert [(f.kind, f.rule, f.severity, f.file) for f in found] == [
        ("vulnerability", "CELLPLANE-TEST-MAVEN-0001", "medium", "pom.xml"),
        ("vulnerability", "CELLPLANE-TEST-MAVEN-0002", "critical", "pom.xml")]
    assert found[0].message == ("org.apache.commons:commons-lang3@3.17.0: Uncontrolled recursion in commons-lang3 "
                                "ClassUtils.getClass before 3.18.0 (fixed in 3.18.0)")
    assert [f.rule for f in scans.Policy().blocking(found)] == ["CELLPLANE-TEST-MAVEN-0002"]
    gradle = scans.scan_dependencies(db, None, None, maven_pins=pins[:1], maven_file="build.gradle.kts")
    assert [f.file for f in gradle] == ["build.gradle.kts"]


@pytest.fixture(scope="module")
def lang3_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The java-task fixture with commons-lang3 3.17.0 (CELLPLANE-TEST-MAVEN-0001, medium) beside its jar."""
    source = tmp_path_factory.mktemp("maven") / "lang3"
    shutil.copytree(APPS / "java-task", source)
    pom = source / "pom.xml"
    pom.write_text(pom.read_text().replace("  <build>", "  <dependencies>\n    <dependency>\n"
                                           "      <groupId>org.apache.commons</groupId>\n"
                                           "      <artifactId>commons-lang3</artifactId>\n"
                                           "      <version>3.17.0</version>\n    </dependency>\n"
                                           "  </dependencies>\n  <build>", 1))
    return source


def test_a_java_build_whose_jar_runs_with_a_vulnerable_artifact_reports_it_against_pom_xml(
        build_server: BuildServer, jdk: None, lang3_source: Path) -> None:
    c = build_server.client
    component(c, "jvm", "lang3", {"type": "manual-task"})
    info = wait(c, upload(c, "jvm", "lang3", lang3_source), timeout=600)
    assert info["state"] == "succeeded", failed_why(c, info)  # medium: found, not blocking
    found = [(f["rule"], f["severity"], f["file"]) for f in info["findings"] if f["kind"] == "vulnerability"]
    assert found == [("CELLPLANE-TEST-MAVEN-0001", "medium", "pom.xml")]


def test_a_project_failing_on_medium_vulnerabilities_fails_that_java_build_naming_the_advisory(
        build_server: BuildServer, jdk: None, lang3_source: Path) -> None:
    c = build_server.client
    r = c.post("/apply", json={"documents": [
        {"apiVersion": "cellplane.dev/v1alpha1", "kind": "Project",
         "metadata": {"name": "strict-jvm", "organization": "default"},
         "spec": {"buildPolicy": {"failOn": {"vulnerabilities": "medium"}}}}]})
    assert r.status_code == 200, r.text
    component(c, "strict-jvm", "lang3", {"type": "manual-task"})
    info = wait(c, upload(c, "strict-jvm", "lang3", lang3_source), timeout=600)
    assert info["state"] == "failed", failed_why(c, info)
    assert "CELLPLANE-TEST-MAVEN-0001" in info["error"] and "\n" not in info["error"], info["error"]
    assert str(lang3_source) not in info["error"]


def test_the_jar_a_multi_stage_dockerfile_starts_is_pinned_and_scanned_like_a_maven_build(
        build_server: BuildServer, jdk: None, tmp_path: Path) -> None:
    (build_server.osv / "webmvc-test.json").write_text(json.dumps({
        "id": "CELLPLANE-TEST-MAVEN-WEBMVC", "summary": "test advisory against spring-webmvc 6 before 7.0.0",
        "affected": [{"package": {"ecosystem": "Maven", "name": "org.springframework:spring-webmvc"},
                      "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "6.0.0-M1"}, {"fixed": "7.0.0"}]}]}],
        "database_specific": {"severity": "HIGH"}}))
    source = tmp_path / "spring-docker"
    shutil.copytree(APPS / "java-spring", source)
    (source / "Dockerfile").write_text(
        "FROM maven:3.9-eclipse-temurin-17 AS build\nWORKDIR /src\nCOPY pom.xml .\nCOPY src src\n"
        "RUN mvn -B -q package -DskipTests\n\n"
        "FROM eclipse-temurin:17-jre\nWORKDIR /app\nCOPY --from=build /src/target/greeting-1.0.0.jar app.jar\n"
        "EXPOSE 8080\nCMD [\"java\", \"-jar\", \"/app/app.jar\"]\n")
    c = build_server.client
    component(c, "jvm", "spring-docker", {"type": "service"})
    info = wait(c, upload(c, "jvm", "spring-docker", source), timeout=600)
    assert info["state"] == "succeeded", failed_why(c, info)
    found = [(f["rule"], f["severity"], f["file"]) for f in info["findings"] if f["kind"] == "vulnerability"]
    assert found == [("CELLPLANE-TEST-MAVEN-WEBMVC", "high", "pom.xml")]
    r = c.get(f"/organizations/default/projects/jvm/artifacts/{info['artifact']}/manifest")
    assert r.status_code == 200, r.text
    pins = {d["name"]: d["version"] for d in r.json()["manifest"]["dependencies"] if d["ecosystem"] == "Maven"}
    assert pins["org.springframework.boot:spring-boot"] == "3.5.7" and "org.springframework:spring-webmvc" in pins


def test_the_started_jar_is_read_from_java_jar_and_java_cp_and_never_outside_the_tree(tmp_path: Path) -> None:
    from cellplane.build.languages.java import started_jar

    root = tmp_path / "image"
    (root / "app" / "lib").mkdir(parents=True)
    (root / "app" / "app.jar").write_bytes(b"PK")
    (tmp_path / "outside.jar").write_bytes(b"PK")
    app = root / "app"
    assert started_jar("java -jar app.jar", app, root) == (app / "app.jar").resolve()
    assert started_jar("java -XX:+UseSerialGC -jar /app/app.jar --port=1", app, root) == (app / "app.jar").resolve()
    assert started_jar("java -cp 'app.jar:lib/*' com.example.Main", app, root) == (app / "app.jar").resolve()
    assert started_jar("java -jar ../../outside.jar", app, root) is None
    assert started_jar("java -jar missing.jar", app, root) is None and started_jar("./server", app, root) is None
    assert started_jar("java -jar 'unclosed", app, root) is None


def test_a_dockerfile_jar_that_is_not_a_zip_gets_no_pins_and_a_note_not_a_traceback(
        build_server: BuildServer, jdk: None, tmp_path: Path) -> None:
    source = tmp_path / "not-a-jar"
    source.mkdir()
    (source / "app.jar").write_text("not a zip\n")
    (source / "Dockerfile").write_text("FROM eclipse-temurin:17-jre\nWORKDIR /app\nCOPY app.jar app.jar\n"
                                       "CMD [\"java\", \"-jar\", \"/app/app.jar\"]\n")
    c = build_server.client
    component(c, "jvm", "not-a-jar", {"type": "manual-task"})
    info = wait(c, upload(c, "jvm", "not-a-jar", source), timeout=300)
    assert info["state"] == "succeeded", failed_why(c, info)
    logs = log_text(c, info["id"])
    assert "app/app.jar cannot be read as a jar" in logs and str(tmp_path) not in logs
