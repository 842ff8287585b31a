"""Java detection and jar reading, in-process: the version a pom or Gradle build asks for, what wins over what,
manifests, main methods found in class files, and dependency pins read from a fat jar."""

from __future__ import annotations

import io
import os
import shutil
import struct
import subprocess
import zipfile
from pathlib import Path

import pytest

from cellplane.build import detect
from cellplane.build.languages import java
from cellplane.build.plan import BuildFailure

POM = """<?xml version="1.0"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>g</groupId><artifactId>a</artifactId><version>1</version>
  {body}
</project>
"""


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return tmp_path


def _detect(tmp_path: Path, files: dict[str, str], component_type: str = "service",
            build: dict[str, str] | None = None) -> detect.Detection:
    return detect.detect(_tree(tmp_path, files), build or {}, component_type)


@pytest.mark.parametrize(("body", "version", "where"), [
    ("<properties><java.version>21</java.version></properties>", "21", "pom.xml (java.version)"),
    ("<properties><jdk>11</jdk><maven.compiler.release>${jdk}</maven.compiler.release></properties>", "11",
     "pom.xml (maven.compiler.release)"),
    ("<properties><maven.compiler.source>1.8</maven.compiler.source></properties>", "8",
     "pom.xml (maven.compiler.source)"),
    ("<build><plugins><plugin><artifactId>maven-compiler-plugin</artifactId><configuration><release>17</release>"
     "</configuration></plugin></plugins></build>", "17", "pom.xml (the maven-compiler-plugin's release)"),
    ("<build><plugins><plugin><artifactId>maven-toolchains-plugin</artifactId><configuration><toolchains><jdk>"
     "<version>[21,)</version></jdk></toolchains></configuration></plugin></plugins></build>", "21",
     "pom.xml (the maven-toolchains-plugin's jdk version)"),
])
def test_the_java_version_a_pom_asks_for_is_read_with_its_properties(tmp_path: Path, body: str, version: str,
                                                                      where: str) -> None:
    found = _detect(tmp_path, {"pom.xml": POM.format(body=body)})
    assert found.plan.strategy == "java" and found.plan.language == "java"
    assert found.plan.language_version == version
    assert java.asked_version(detect.tree(tmp_path)) == (version, where)


@pytest.mark.parametrize(("text", "version"), [
    ("java { toolchain { languageVersion = JavaLanguageVersion.of(21) } }", "21"),
    ("java { sourceCompatibility = JavaVersion.VERSION_17 }", "17"),
    ("sourceCompatibility = '1.8'", "8"),
    ("plugins { java }", None),
])
def test_the_java_version_a_gradle_build_asks_for_is_read(tmp_path: Path, text: str, version: str | None) -> None:
    found = _detect(tmp_path, {"build.gradle.kts": text})
    assert found.plan.strategy == "java" and found.plan.language_version == version
    assert found.plan.reason.startswith("Gradle project (build.gradle.kts): the machine's gradle builds it")



def _need_jdk() -> None:
    """A JDK is installed by make buildtools: missing, it fails the test in CI and skips it elsewhere."""
    missing = [tool for tool in ("javac",) if not shutil.which(tool)]
    if missing:
        ci = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")
        (pytest.fail if ci else pytest.skip)(f"needs a JDK's {', '.join(missing)} (make buildtools installs one)")


def test_a_pom_wins_over_python_and_node_files_but_a_procfile_and_a_dockerfile_win_over_it(tmp_path: Path) -> None:
    files = {"pom.xml": POM.format(body=""), "requirements.txt": "flask\n", "package.json": "{}", "mvnw": "#!/bin/sh\n"}
    found = _detect(tmp_path, files)
    assert found.plan.strategy == "java"
    assert found.plan.reason == ("Maven project (pom.xml): ./mvnw package (the project's Maven wrapper) builds it, "
                                 "and the runnable jar it writes starts the app.")
    assert found.plan.run is None and found.plan.build_commands == []  # the jar the build writes decides
    procfile = _detect(tmp_path, {"Procfile": "web: java -jar target/a-1.jar\n"})
    assert procfile.plan.strategy == "procfile" and procfile.plan.language == "java"
    assert procfile.plan.build_commands == []  # the runner runs Maven, then the Procfile's command starts it


def test_a_task_is_run_not_served(tmp_path: Path) -> None:
    found = _detect(tmp_path, {"pom.xml": POM.format(body="")}, component_type="manual-task")
    assert found.plan.reason.endswith("builds it, and the runnable jar it writes runs the manual-task.")


def test_build_language_java_is_accepted_and_explicit_commands_replace_maven(tmp_path: Path) -> None:
    found = _detect(tmp_path, {"pom.xml": POM.format(body="")},
                    build={"command": "mvn -B package -Pprod", "run": "java -jar target/a-1.jar"})
    assert found.plan.strategy == "explicit" and found.plan.language == "java"
    assert found.plan.build_commands == ["mvn -B package -Pprod"] and found.plan.run == "java -jar target/a-1.jar"
    assert detect.detect(tmp_path, {"language": "java", "run": "java -jar x.jar"}).plan.language == "java"


def test_a_pom_with_entities_or_broken_xml_is_refused_naming_it(tmp_path: Path) -> None:
    with pytest.raises(BuildFailure) as e:
        _detect(tmp_path / "a", {"pom.xml": '<!DOCTYPE x [<!ENTITY a "b">]><project/>'})
    assert e.value.where == "pom.xml" and "entities" in e.value.message
    with pytest.raises(BuildFailure) as e:
        _detect(tmp_path / "b", {"pom.xml": "<project><properties></project>"})
    assert e.value.message.startswith("pom.xml is not well-formed XML") and str(tmp_path) not in e.value.message


def test_manifest_continuation_lines_are_joined() -> None:
    text = ("Manifest-Version: 1.0\r\nMain-Class: com.example.averyveryveryveryveryveryveryveryveryveryverylongpa\r\n"
            " ckage.Main\r\nStart-Class: x.Y\r\n\r\nName: other\r\nMain-Class: ignored\r\n")
    fields = java.parse_manifest(text)
    assert fields["Main-Class"] == "com.example.averyveryveryveryveryveryveryveryveryveryverylongpackage.Main"
    assert fields["Start-Class"] == "x.Y"


def test_main_methods_are_found_in_class_files_and_only_public_static_ones_count(tmp_path: Path) -> None:
    _need_jdk()
    (tmp_path / "Tool.java").write_text(
        "public class Tool {\n  static final long BIG = 1L << 40;\n  static final double D = 2.5;\n"
        "  public static void main(String[] args) { System.out.println(\"x\" + BIG + D); }\n}\n")
    (tmp_path / "Helper.java").write_text(
        "public class Helper {\n  public void main(String[] args) { }\n  static void main(int x) { }\n}\n")
    subprocess.run(["javac", "-d", str(tmp_path / "out"), "Tool.java", "Helper.java"], cwd=tmp_path, check=True)
    assert java.declares_main((tmp_path / "out" / "Tool.class").read_bytes())
    assert not java.declares_main((tmp_path / "out" / "Helper.class").read_bytes())
    assert not java.declares_main(b"\xca\xfe\xba\xbe" + struct.pack(">HHH", 0, 61, 9))  # truncated: no, no crash


def _jar(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in entries.items():
            z.writestr(name, data)
    return buf.getvalue()


def test_pins_come_from_bundled_pom_properties_else_the_local_repository(tmp_path: Path) -> None:
    with_props = _jar({"META-INF/maven/com.fasterxml.jackson.core/jackson-core/pom.properties":
                       b"#generated\ngroupId=com.fasterxml.jackson.core\nartifactId=jackson-core\nversion=2.19.2\n"})
    gradle_built = _jar({"META-INF/MANIFEST.MF": b"Manifest-Version: 1.0\n"})
    fat = tmp_path / "app.jar"
    fat.write_bytes(_jar({"BOOT-INF/lib/jackson-core-2.19.2.jar": with_props,
                          "BOOT-INF/lib/spring-core-6.2.12.jar": gradle_built,
                          "BOOT-INF/lib/mystery-1.0.jar": gradle_built}))
    repository = tmp_path / "repository"
    (repository / "org/springframework/spring-core/6.2.12").mkdir(parents=True)
    (repository / "org/springframework/spring-core/6.2.12/spring-core-6.2.12.jar").write_bytes(gradle_built)
    assert java.pins(fat, None, repository) == [
        {"ecosystem": "Maven", "name": "com.fasterxml.jackson.core:jackson-core", "version": "2.19.2"},
        {"ecosystem": "Maven", "name": "mystery", "version": "1.0"},  # in neither: its file name, without a group
        {"ecosystem": "Maven", "name": "org.springframework:spring-core", "version": "6.2.12"},
    ]
