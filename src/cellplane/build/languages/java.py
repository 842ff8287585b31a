"""Java: Maven and Gradle projects built on the machine's JDK; the runnable jar they write starts the app.

Detection (:func:`plan`) reads ``pom.xml`` / ``build.gradle[.kts]`` only, and records the Java version the
project asks for: Maven's ``maven.compiler.release`` / ``source`` / ``target`` and ``java.version`` properties,
the compiler plugin's ``<release>`` and the toolchains plugin's ``<version>``; Gradle's
``JavaLanguageVersion.of(N)``, ``JavaVersion.VERSION_N`` and ``sourceCompatibility``. The machine's JDK is the one
used: a project asking for a newer one is refused with one line.

The build (:class:`JavaBuild`) runs one tool command in the work tree:

- Maven: ``./mvnw`` when the project carries the Maven wrapper (the Maven distribution it fetches from Maven
  Central is kept in the cache's ``maven/wrapper``), else the machine's ``mvn``: ``-B -q -DskipTests package``,
  with a fixed ``project.build.outputTimestamp`` unless the pom sets one, so the same source gives the same jar.
  The local repository is the cache's ``maven/repository``, shared by every build (one Java build writes to it
  at a time: a file lock), so a rebuild downloads nothing. Once a build of the same pom files (their digest,
  recorded in the artifact) has succeeded, the next runs Maven offline (``-o``: no remote metadata look-ups);
  should that fail, it runs once more online.
- Gradle: the machine's ``gradle`` (``bootJar`` with the Spring Boot plugin, else ``jar``). ``./gradlew`` is
  never run: it downloads a Gradle distribution from services.gradle.org, which is not a package registry.

:meth:`JavaBuild.finish` then picks the runnable jar in ``target/`` (``build/libs/`` for Gradle; one level of
modules below too): a jar whose manifest names a ``Main-Class`` (a Spring Boot fat jar's is
``org.springframework.boot.loader...``) starts with ``java -jar``; a jar without one, in which exactly one class
declares ``public static void main(String[])``, with ``java -cp``. The artifact holds that jar alone (plus
``lib/`` with a plain jar's runtime dependencies), and the manifest its exact dependency pins, read from each
bundled jar's ``META-INF/maven/<group>/<artifact>/pom.properties``. Cost, measured on two cores: a warm Spring
Boot rebuild is one Maven run of 3 to 6 s; finding the jar and reading the pins of its 30 nested jars 0.35 s,
most of it Python's zipfile reading their 13,000 directory entries.
"""

from __future__ import annotations

import io
import os
import re
import shlex
import shutil
import struct
import subprocess
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from xml.etree import ElementTree

from cellplane.build.plan import BuildFailure, Plan
from cellplane.runtime.materialize import digest_of, locked, run

Log = Callable[[str], None]

GRADLE_FILES = ("build.gradle.kts", "build.gradle")
# Flags every Java start command carries (before $JAVA_OPTS, which may override them): the serial collector
# (the least memory and threads for a small heap), the heap sized to the replica's memory limit (its cgroup),
# half the default thread stack (Tomcat's 200 threads), and exit on OutOfMemoryError so the supervisor restarts
# the replica instead of it limping on.
JVM_FLAGS = ("-XX:+UseSerialGC", "-XX:MaxRAMPercentage=75", "-Xss512k", "-XX:+ExitOnOutOfMemoryError")
# Maven itself starts faster with C1 only and the serial collector: about a second of a short build.
BUILD_JVM_FLAGS = "-XX:+UseSerialGC -XX:TieredStopAtLevel=1"
OUTPUT_TIMESTAMP = "1980-01-01T00:00:02Z"
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies"
LIB_DIR = "target/cellplane-lib"
SPRING_LOADER = "org.springframework.boot.loader"
MAX_CLASSES = 20000
_SKIP_JARS = re.compile(r"-(sources|javadoc|tests|test-sources|test-javadoc|plain)\.jar$")
_GRADLE_VERSION = (
    re.compile(r"JavaLanguageVersion\.of\(\s*[\"']?(\d+)"),
    re.compile(r"JavaVersion\.VERSION_(?:1_)?(\d+)"),
    re.compile(r"(?:source|target)Compatibility\s*=\s*[\"']?(?:1\.)?(\d+)"),
)


_COMPILE_ERROR = re.compile(r"^(\S+?\.(?:java|kt|groovy|scala)):\[(\d+)(?:,\d+)?\]\s*(.*)$")
_JAVAC_ERROR = re.compile(r"^(\S+?\.java):(\d+): error: (.*)$")
_OFFLINE_MISS = re.compile(r"offline mode|Cannot access .* in offline|has not been downloaded from it before")
_ADVICE = ("-> [Help", "[Help", "To see the full stack trace", "Re-run Maven", "For more information about",
           "After correcting the problems")


class _ToolFailed(Exception):
    """The tool's command failed: its output, and the one-line failure made of it."""

    def __init__(self, lines: list[str], failure: BuildFailure) -> None:
        super().__init__(failure.message)
        self.lines = lines
        self.failure = failure


class Files(Protocol):
    """Read-only access to a source tree (detection's ``_Tree``)."""

    def is_file(self, rel: str, strict: bool = True) -> bool: ...

    def read(self, rel: str) -> str: ...


def is_java(files: Files) -> bool:
    return files.is_file("pom.xml") or any(files.is_file(f) for f in GRADLE_FILES)


def _gradle_file(files: Files) -> str | None:
    return next((f for f in GRADLE_FILES if files.is_file(f)), None)


def plan(files: Files, component_type: str) -> Plan:
    """The plan of a Maven or Gradle project: no start command yet (the jar the build writes decides it)."""
    version = asked_version(files)
    if files.is_file("pom.xml"):
        wrapper = files.is_file("mvnw", strict=False)
        tool = "./mvnw package (the project's Maven wrapper)" if wrapper else "the machine's mvn package"
        reason = (f"Maven project (pom.xml): {tool} builds it, and the runnable jar it writes "
                  f"{'runs the ' + component_type if component_type not in _SERVES else 'starts the app'}.")
    else:
        gradle = _gradle_file(files)
        reason = (f"Gradle project ({gradle}): the machine's gradle builds it, and the runnable jar it writes "
                  f"{'runs the ' + component_type if component_type not in _SERVES else 'starts the app'}.")
    result = Plan(strategy="java", reason=reason, language="java", language_version=version[0] if version else None)
    if files.is_file("gradlew", strict=False) and not files.is_file("pom.xml"):
        result.notes.append("gradlew is not run (it downloads Gradle from services.gradle.org); "
                            "the build machine's gradle builds the project")
    return result


_SERVES = frozenset({"service", "web-app", "webhook", "api-proxy"})


# --- the Java version asked for -------------------------------------------------------------------------------


def asked_version(files: Files) -> tuple[str, str] | None:
    """(major version, where it is asked) of the Java the build files ask for, or None."""
    if files.is_file("pom.xml"):
        return _pom_version(_pom(files.read("pom.xml")))
    gradle = _gradle_file(files)
    if gradle is None:
        return None
    text = files.read(gradle)
    for pattern in _GRADLE_VERSION:
        match = pattern.search(text)
        if match:
            return match.group(1), gradle
    return None


@dataclass
class _Pom:
    properties: dict[str, str] = field(default_factory=dict)
    plugins: dict[str, ElementTree.Element] = field(default_factory=dict)  # artifactId -> <plugin>
    runtime_dependencies: bool = False  # a dependency the jar needs at run time (not test/provided/system)
    parent: str = ""  # the parent's artifactId

    def value(self, text: str | None) -> str | None:
        """``text`` with ``${property}`` references to the pom's own properties replaced (a few levels deep)."""
        if text is None:
            return None
        for _ in range(5):
            replaced = re.sub(r"\$\{([^}]+)\}", lambda m: self.properties.get(m.group(1), m.group(0)), text)
            if replaced == text:
                break
            text = replaced
        return text.strip() or None


def _strip(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _pom(text: str) -> _Pom:
    if "<!ENTITY" in text or "<!DOCTYPE" in text:
        raise BuildFailure("pom.xml declares a DOCTYPE or XML entities, which are not read; remove them",
                           where="pom.xml")
    try:
        root = ElementTree.fromstring(text)  # noqa: S314  (no DOCTYPE and no entities: checked above)
    except ElementTree.ParseError as e:
        raise BuildFailure(f"pom.xml is not well-formed XML: {e}", where="pom.xml") from None
    for element in root.iter():
        element.tag = _strip(str(element.tag))
    pom = _Pom()
    properties = root.find("properties")
    for prop in properties if properties is not None else []:
        pom.properties[prop.tag] = (prop.text or "").strip()
    for plugin in root.iterfind("./build/plugins/plugin"):
        pom.plugins[(plugin.findtext("artifactId") or "").strip()] = plugin
    for plugin in root.iterfind("./build/pluginManagement/plugins/plugin"):
        pom.plugins.setdefault((plugin.findtext("artifactId") or "").strip(), plugin)
    for dependency in root.iterfind("./dependencies/dependency"):
        if (dependency.findtext("scope") or "compile").strip() in ("compile", "runtime"):
            pom.runtime_dependencies = True
    pom.parent = (root.findtext("./parent/artifactId") or "").strip()
    return pom


def _major(version: str) -> str:
    """"1.8" -> "8", "17" -> "17", "21.0.2" -> "21", "[21,)" (a toolchain range) -> "21"."""
    match = re.match(r"\D*(\d+)(?:\.(\d+))?", version)
    if match is None:
        return version.strip()
    return match.group(2) if match.group(1) == "1" and match.group(2) else match.group(1)


def _pom_version(pom: _Pom) -> tuple[str, str] | None:
    compiler = pom.plugins.get("maven-compiler-plugin")
    toolchains = pom.plugins.get("maven-toolchains-plugin")
    candidates = [
        (pom.value(toolchains.findtext(".//jdk/version")) if toolchains is not None else None,
         "the maven-toolchains-plugin's jdk version"),
        (pom.value(compiler.findtext("./configuration/release")) if compiler is not None else None,
         "the maven-compiler-plugin's release"),
        *((pom.value(pom.properties.get(name)), name) for name in (
            "maven.compiler.release", "java.version", "maven.compiler.source", "maven.compiler.target")),
    ]
    for value, where in candidates:
        if value and re.match(r"^\[?\d+(\.\d+)*", value):
            return _major(value), f"pom.xml ({where})"
    return None


# --- the machine's tools --------------------------------------------------------------------------------------


def machine_java() -> tuple[str, str]:
    """(major, full version) of the java on PATH; a BuildFailure when there is no JDK."""
    java, javac = shutil.which("java"), shutil.which("javac")
    if not java or not javac:
        raise BuildFailure("this Java project needs a JDK, and the build machine has no "
                           f"{'java' if not java else 'javac'} on its PATH; install one there "
                           "(Debian: apt-get install openjdk-17-jdk-headless)", where="build")
    out = subprocess.run([java, "-version"], capture_output=True, text=True, check=False, timeout=60)
    match = re.search(r'version "([^"]+)"', out.stderr + out.stdout)
    full = match.group(1) if match else "unknown"
    return _major(full) if match else "0", full


@dataclass
class Runnable:
    """The jar that starts the app and how."""

    jar: Path  # in the work tree
    lib: Path | None  # a directory of runtime dependencies next to a plain jar
    main_class: str | None  # for ``java -cp``; None when the jar's manifest names its Main-Class
    spring_boot: bool
    run: str  # the start command, relative to the artifact's files/


class JavaBuild:
    """One Java build in ``work``: :meth:`prepare` (tools and versions), :meth:`build`, :meth:`finish`."""

    def __init__(self, work: Path, cache_root: Path, component_type: str, log: Log) -> None:
        self.work = work
        self.cache = cache_root
        self.serves = component_type in _SERVES
        self.log = log
        self.tool = "maven" if (work / "pom.xml").is_file() else "gradle"
        self.wrapper = self.tool == "maven" and (work / "mvnw").is_file()
        self.command = ""
        self.pom_digest: str | None = None
        self.java_version = ""
        self.asked: tuple[str, str] | None = None
        self.runnable: Runnable | None = None
        self.dependencies: list[dict[str, str]] = []

    @property
    def repository(self) -> Path:
        return self.cache / "maven" / "repository"

    @property
    def build_file(self) -> str:
        """The file that declares the dependencies (pom.xml or build.gradle[.kts]): where scan findings point."""
        if self.tool == "maven":
            return "pom.xml"
        return next((name for name in GRADLE_FILES if (self.work / name).is_file()), "build.gradle")

    def maven_pins(self) -> list[tuple[str, str]]:
        """The pinned dependencies as ``("group:artifact", "version")`` pairs, for the vulnerability scan."""
        return [(d["name"], d["version"]) for d in self.dependencies if d.get("ecosystem") == "Maven"]

    def env(self) -> dict[str, str]:
        """Environment for the build and test commands: the shared Maven repository and wrapper distributions,
        Gradle's home, under the cache."""
        return {"MAVEN_OPTS": f"{BUILD_JVM_FLAGS} -Dmaven.repo.local={self.repository}",
                "MAVEN_USER_HOME": str(self.cache / "maven"), "GRADLE_USER_HOME": str(self.cache / "gradle"),
                "GRADLE_OPTS": "-Dorg.gradle.daemon=false"}

    def prepare(self, files: Files) -> None:
        """Check the JDK (and the version asked for) and the build tool; decide the tool's command line."""
        major, self.java_version = machine_java()
        self.asked = asked_version(files)
        if self.asked and major.isdigit() and self.asked[0].isdigit() and int(self.asked[0]) > int(major):
            version, where = self.asked
            raise BuildFailure(f"{where} asks for Java {version}, and the build machine's JDK is Java {major}; "
                               f"install a JDK {version} there, or ask for Java {major} or lower",
                               where=where.split(" ", 1)[0])
        self.log(f"JDK: java {self.java_version}" + (f"; {self.asked[1]} asks for Java {self.asked[0]}"
                                                       if self.asked else ""))
        if self.tool == "maven":
            self.command = self._maven_command(_pom(files.read("pom.xml")))
        else:
            self.command = self._gradle_command(files)

    def _maven_command(self, pom: _Pom) -> str:
        if self.wrapper:
            mvnw = self.work / "mvnw"
            mvnw.chmod(mvnw.stat().st_mode | 0o111)
            words = ["./mvnw"]
        elif shutil.which("mvn"):
            words = ["mvn"]
        else:
            raise BuildFailure("pom.xml: this Maven project has no Maven wrapper (mvnw) and the build machine has "
                               "no mvn on its PATH; add the wrapper (mvn -N wrapper:wrapper) or install Maven there",
                               where="pom.xml")
        words += ["-B", "-q", "-DskipTests"]
        if "project.build.outputTimestamp" not in pom.properties:
            words.append(f"-Dproject.build.outputTimestamp={OUTPUT_TIMESTAMP}")
        words.append("package")
        fat = {"spring-boot-maven-plugin", "maven-shade-plugin", "maven-assembly-plugin"} & set(pom.plugins)
        if pom.runtime_dependencies and not fat and pom.parent != "spring-boot-starter-parent":
            words += [DEPENDENCY_PLUGIN, "-DincludeScope=runtime", f"-DoutputDirectory={LIB_DIR}"]
        poms = sorted(p for p in self.work.rglob("pom.xml") if "target" not in p.relative_to(self.work).parts)
        inputs = [str(p.relative_to(self.work)).encode() + b"\0" + p.read_bytes() for p in poms[:200]]
        wrapper = self.work / ".mvn" / "wrapper" / "maven-wrapper.properties"
        if wrapper.is_file():
            inputs.append(wrapper.read_bytes())
        self.pom_digest = "sha256:" + digest_of(*inputs, " ".join(words).encode())
        return " ".join(words)

    def _gradle_command(self, files: Files) -> str:
        gradle = _gradle_file(files) or "build.gradle"
        if not shutil.which("gradle"):
            raise BuildFailure(f"{gradle}: Gradle projects are built with the build machine's gradle, and it has "
                               "none on its PATH (gradlew is not run: it would download Gradle from "
                               "services.gradle.org); install Gradle there, or build with Maven (pom.xml)",
                               where=gradle)
        task = "bootJar" if "org.springframework.boot" in files.read(gradle) else "jar"
        return f"gradle --no-daemon -q -x test {task}"

    def build(self, env: dict[str, str]) -> None:
        """Run the tool's command in the work tree with ``env`` (the build's, :meth:`env` included). Maven runs
        offline when the same poms were resolved before (online once more should that fail for want of an
        artifact), one Java build at a time on the shared repository. A failure is one line: the first compile
        error's file (relative to the source) and line, else Maven's first error, never the build's directories."""
        if self.tool == "gradle":
            self._run(self.command, env)
            return
        assert self.pom_digest
        marker = self.cache / "maven" / "resolved" / self.pom_digest.removeprefix("sha256:")[:40]
        with locked(self.repository):
            if marker.exists():
                self.log("these pom files were resolved by an earlier build: Maven runs offline")
                try:
                    self._run(self.command.replace(" -B ", " -B -o ", 1), env)
                    return
                except _ToolFailed as e:
                    if not any(_OFFLINE_MISS.search(line) for line in e.lines):
                        raise e.failure from None
                    self.log("an artifact is missing from the shared repository: once more online")
            try:
                self._run(self.command, env)
            except _ToolFailed as e:
                raise e.failure from None
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.write_text(self.command + "\n")

    def _run(self, command: str, env: dict[str, str]) -> None:
        lines: list[str] = []

        def log(line: str) -> None:
            self.log(line)
            if len(lines) < 2000:
                lines.append(line)

        self.log(f"$ {command}")
        tool = command.split()[0]
        try:
            run(["/bin/sh", "-c", command], cwd=self.work, env=env, log=log, what=f"the build ({tool})")
        except BuildFailure as e:
            raise _ToolFailed(lines, self._failure(tool, lines, e)) from None

    def _failure(self, tool: str, lines: list[str], failed: BuildFailure) -> BuildFailure:
        """One line from the tool's output: the first compile error (file relative to the source, line, message),
        else the first error that is not advice; else the runner's own (its exit code and last line)."""
        root = str(self.work.resolve()) + "/"
        shown = [line.replace(root, "").replace(str(self.work) + "/", "").replace("file://", "") for line in lines]
        errors = [line.removeprefix("[ERROR]").strip() for line in shown if line.startswith("[ERROR]")]
        for error in [*errors, *shown]:  # Maven's A.java:[12,9], javac's A.java:12: error:
            match = _COMPILE_ERROR.match(error) or _JAVAC_ERROR.match(error)
            if match:
                path, number, message = match.groups()
                return BuildFailure(f"{tool} could not compile {path} line {number}: {message}", where=path)
        useful = [e for e in errors if e and not e.startswith(_ADVICE)]
        if useful:
            return BuildFailure(f"the build ({tool}) failed: {useful[0]}", where="build")
        return BuildFailure(failed.message.replace(root, ""), where=failed.where or "build")

    def finish(self) -> Runnable:
        """Pick the runnable jar and its start command; read the dependency pins."""
        jars = self._jars()
        where = "target/" if self.tool == "maven" else "build/libs/"
        if not jars:
            raise BuildFailure(f"the build wrote no jar to {where} (or a module's); "
                               "set build.run to say what starts the app", where="build")
        executable = [(jar, main) for jar in jars if (main := _manifest(jar).get("Main-Class"))]
        if len(executable) > 1:
            raise BuildFailure(f"the build wrote several runnable jars ({self._names(j for j, _ in executable)}); "
                               "set build.run to say which starts the app", where="build.run")
        if executable:
            jar, main = executable[0]
            spring = main.startswith(SPRING_LOADER)
            lib = self._lib(jar)
            main_class = None if lib is None else main
        else:
            mains = [(jar, cls) for jar in jars for cls in _main_classes(jar)]
            if not mains:
                raise BuildFailure(f"no jar in {where} names a Main-Class and no class in them declares "
                                   "public static void main(String[]); set build.run", where="build.run")
            if len(mains) > 1:
                shown = ", ".join(cls for _, cls in mains[:5])
                raise BuildFailure(f"several classes declare main ({shown}) and no jar's manifest names a "
                                   "Main-Class; set one (the jar plugin's manifest mainClass) or build.run",
                                   where="build.run")
            jar, main_class = mains[0]
            spring, lib = False, self._lib(jar)
        flags = " ".join(JVM_FLAGS)
        name = shlex.quote(jar.name)
        if main_class is None:
            run = f"java {flags} $JAVA_OPTS -jar {name}"
        else:
            classpath = f"{jar.name}:lib/*" if lib is not None else jar.name
            run = f"java {flags} $JAVA_OPTS -cp {shlex.quote(classpath)} {main_class}"
        if spring and self.serves:
            run += " --server.port=$PORT"
        self.runnable = Runnable(jar, lib, main_class, spring, run)
        self.dependencies = pins(jar, lib, self.repository)
        kind = "a Spring Boot jar" if spring else ("a jar naming its Main-Class" if main_class is None
                                                    else f"a plain jar whose class {main_class} declares main")
        self.log(f"runnable jar: {jar.relative_to(self.work)} ({kind}), {len(self.dependencies)} pinned "
                 "dependencies")
        for dep in self.dependencies:
            self.log(f"  {dep['name']}:{dep['version']}")
        return self.runnable

    def _jars(self) -> list[Path]:
        out = "target" if self.tool == "maven" else "build/libs"
        found = [p for p in sorted((self.work / out).glob("*.jar")) if not _SKIP_JARS.search(p.name)]
        if not found:
            for module in sorted(p for p in self.work.iterdir() if p.is_dir() and not p.name.startswith(".")):
                found += [p for p in sorted((module / out).glob("*.jar")) if not _SKIP_JARS.search(p.name)]
        return found

    def _lib(self, jar: Path) -> Path | None:
        lib = jar.parent / "cellplane-lib"
        return lib if self.tool == "maven" and lib.is_dir() and any(lib.glob("*.jar")) else None

    def _names(self, jars: Iterator[Path]) -> str:
        return ", ".join(str(j.relative_to(self.work)) for j in jars)

    def package(self, files: Path) -> None:
        """Copy what runs into the artifact's ``files/``: the jar, and ``lib/`` for a plain jar's dependencies."""
        assert self.runnable
        files.mkdir(parents=True)
        shutil.copy2(self.runnable.jar, files / self.runnable.jar.name)
        if self.runnable.lib is not None:
            shutil.copytree(self.runnable.lib, files / "lib")

    def record(self) -> dict[str, Any]:
        """What the manifest says of the Java build."""
        r = self.runnable
        return {"buildTool": self.tool, "wrapper": self.wrapper, "command": self.command,
                "pomDigest": self.pom_digest, "javaVersion": self.java_version,
                "asked": {"version": self.asked[0], "where": self.asked[1]} if self.asked else None,
                "jar": r.jar.name if r else None, "mainClass": r.main_class if r else None,
                "springBoot": bool(r and r.spring_boot), "jvmFlags": list(JVM_FLAGS)}


# --- reading jars ----------------------------------------------------------------------------------------------


def _manifest(jar: Path) -> dict[str, str]:
    try:
        with zipfile.ZipFile(jar) as z:
            text = z.read("META-INF/MANIFEST.MF").decode("utf-8", "replace")
    except (KeyError, zipfile.BadZipFile, OSError):
        return {}
    return parse_manifest(text)


def parse_manifest(text: str) -> dict[str, str]:
    """The main section of a jar manifest (continuation lines, which start with a space, joined)."""
    fields: dict[str, str] = {}
    last = None
    for line in text.replace("\r\n", "\n").split("\n"):
        if not line:
            if fields:
                break
            continue
        if line.startswith(" ") and last:
            fields[last] += line[1:]
        elif ":" in line:
            last, value = line.split(":", 1)
            fields[last] = value.strip()
    return {k: v.strip() for k, v in fields.items()}


def _main_classes(jar: Path) -> list[str]:
    """Classes in ``jar`` declaring ``public static void main(String[])``."""
    found = []
    with zipfile.ZipFile(jar) as z:
        names = [n for n in z.namelist() if n.endswith(".class") and not n.startswith(("META-INF/", "BOOT-INF/lib"))]
        for name in names[:MAX_CLASSES]:
            if name.endswith(("module-info.class", "package-info.class")):
                continue
            if declares_main(z.read(name)):
                found.append(name.removeprefix("BOOT-INF/classes/")[:-6].replace("/", "."))
    return found


_MAIN_DESCRIPTOR = b"([Ljava/lang/String;)V"


def declares_main(data: bytes) -> bool:
    """Whether a class file declares ``public static void main(String[])`` (its constant pool and methods read)."""
    try:
        if data[:4] != b"\xca\xfe\xba\xbe":
            return False
        count = struct.unpack_from(">H", data, 8)[0]
        pos, index, utf8 = 10, 1, {}
        while index < count:
            tag = data[pos]
            pos += 1
            if tag == 1:
                length = struct.unpack_from(">H", data, pos)[0]
                utf8[index] = data[pos + 2:pos + 2 + length]
                pos += 2 + length
            elif tag in (3, 4, 9, 10, 11, 12, 17, 18):
                pos += 4
            elif tag in (5, 6):
                pos += 8
                index += 1
            elif tag in (7, 8, 16, 19, 20):
                pos += 2
            elif tag == 15:
                pos += 3
            else:
                return False
            index += 1
        pos += 6  # access flags, this class, super class
        interfaces = struct.unpack_from(">H", data, pos)[0]
        pos += 2 + 2 * interfaces
        pos = _skip_members(data, pos)  # fields
        methods = struct.unpack_from(">H", data, pos)[0]
        pos += 2
        for _ in range(methods):
            flags, name, descriptor = struct.unpack_from(">HHH", data, pos)
            if flags & 0x0009 == 0x0009 and utf8.get(name) == b"main" and utf8.get(descriptor) == _MAIN_DESCRIPTOR:
                return True
            pos = _skip_attributes(data, pos + 6)
    except (struct.error, IndexError):
        return False
    return False


def _skip_members(data: bytes, pos: int) -> int:
    count = struct.unpack_from(">H", data, pos)[0]
    pos += 2
    for _ in range(count):
        pos = _skip_attributes(data, pos + 6)
    return pos


def _skip_attributes(data: bytes, pos: int) -> int:
    count = struct.unpack_from(">H", data, pos)[0]
    pos += 2
    for _ in range(count):
        pos += 6 + struct.unpack_from(">I", data, pos + 2)[0]
    return pos


def pins(jar: Path, lib: Path | None = None, repository: Path | None = None) -> list[dict[str, str]]:
    """Exact Maven coordinates of the dependencies that run with ``jar``: those bundled in a fat jar
    (``BOOT-INF/lib/``, ``WEB-INF/lib/``) and the jars in ``lib``, from their ``pom.properties``; a jar without
    one (those built by Gradle, Spring's own) is found by its file name in the local ``repository``, whose path
    names its group (one walk of the repository's directories, about 0.1 s for a Spring Boot app's)."""
    found: set[tuple[str, str]] = set()
    groups = _RepositoryIndex(repository)
    with zipfile.ZipFile(jar) as z:
        for name in z.namelist():
            if name.endswith(".jar") and name.startswith(("BOOT-INF/lib/", "WEB-INF/lib/")):
                with zipfile.ZipFile(io.BytesIO(z.read(name))) as nested:
                    found |= _coordinates(nested, name.rsplit("/", 1)[-1], groups)
    for dependency in sorted(lib.glob("*.jar")) if lib is not None else []:
        with zipfile.ZipFile(dependency) as z:
            found |= _coordinates(z, dependency.name, groups)
    return [{"ecosystem": "Maven", "name": n, "version": v} for n, v in sorted(found)]


def started_jar(run: str, workdir: Path, root: Path) -> Path | None:
    """The jar ``run`` starts (``java -jar app.jar``, ``java -cp app.jar:lib/* Main``): relative to ``workdir``,
    absolute ones inside ``root`` (a Dockerfile's image tree); None for anything else or a jar outside ``root``."""
    try:
        words = shlex.split(run)
    except ValueError:
        return None
    for flag in ("-jar", "-cp", "-classpath", "--class-path"):
        if flag in words[:-1]:
            first = words[words.index(flag) + 1].split(":")[0]
            jar = (root / first.lstrip("/") if first.startswith("/") else workdir / first).resolve()
            if jar.suffix == ".jar" and jar.is_file() and jar.is_relative_to(root.resolve()):
                return jar
    return None


class _RepositoryIndex:
    """A Maven repository's jars by file name -> (group:artifact, version), read on first use."""

    def __init__(self, root: Path | None) -> None:
        self.root = root
        self.jars: dict[str, tuple[str, str]] | None = None

    def get(self, filename: str) -> tuple[str, str] | None:
        if self.jars is None:
            self.jars = {}
            for directory, _, names in os.walk(self.root) if self.root and self.root.is_dir() else []:
                parts = Path(directory).relative_to(self.root).parts if self.root else ()
                if len(parts) < 3:
                    continue
                group, artifact, version = ".".join(parts[:-2]), parts[-2], parts[-1]
                if f"{artifact}-{version}.jar" in names:
                    self.jars[f"{artifact}-{version}.jar"] = (f"{group}:{artifact}", version)
        return self.jars.get(filename)


def _coordinates(jar: zipfile.ZipFile, filename: str, groups: _RepositoryIndex) -> set[tuple[str, str]]:
    found = set()
    for name in jar.namelist():
        if name.startswith("META-INF/maven/") and name.endswith("/pom.properties"):
            props = dict(line.split("=", 1) for line in jar.read(name).decode("utf-8", "replace").splitlines()
                         if "=" in line and not line.startswith("#"))
            group, artifact, version = (props.get(k, "").strip() for k in ("groupId", "artifactId", "version"))
            if group and artifact and version:
                found.add((f"{group}:{artifact}", version))
    known = groups.get(filename) if not found else None
    if known:
        found.add(known)
    elif not found:
        match = re.match(r"^(.+?)-(\d[^-]*(?:-[A-Za-z0-9.]+)?)\.jar$", filename)
        if match:
            found.add((match.group(1), match.group(2)))
    return found
