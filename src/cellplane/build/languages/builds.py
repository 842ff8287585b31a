"""Each language's steps in a build, one :class:`LanguageBuild` each, registered in ``BUILDS``.

The runner (:mod:`cellplane.build.runner`) asks ``for_plan`` for the plan's language and calls it at every step;
a language not in the table (``binary``: a Dockerfile's native program) gets the base class, which adds nothing.
Costs are the tools' own: ``go mod download`` once per module graph, Maven or Gradle in the build step, one
``go version -m`` per built binary, one read of a jar's entries for its pins.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import zipfile
from pathlib import Path
from typing import Any

from cellplane.build import scans
from cellplane.build.languages import golang, java, ruby
from cellplane.build.languages.interface import SKIP, BuildSite, LanguageBuild, ScanInputs
from cellplane.build.languages.java import JavaBuild
from cellplane.build.plan import BuildFailure, Plan


class PythonBuild(LanguageBuild):
    """Python: the requirements are always installed (the runner's step), and bandit always runs."""

    def uses_python(self) -> bool:
        return True

    def scans_python_code(self) -> bool:
        return True


class NodeBuild(LanguageBuild):
    """Node.js: ``npm ci`` is the runner's (any plan with a package.json); the lock's pins go in the manifest."""

    def pins(self, manifest: dict[str, Any]) -> None:
        node_lock = self.site.workdir / "package-lock.json"
        if node_lock.is_file():
            manifest["lock"]["node"] = manifest["workdir"] + "/package-lock.json"
            manifest["dependencies"] += [{"ecosystem": "npm", "name": n, "version": v}
                                         for n, v, _ in sorted(set(scans.parse_package_lock(node_lock.read_text())))]


class StaticBuild(LanguageBuild):
    """A static site: only its root (``build/``, ``dist/`` or the plan's) is packaged, served with SPA fallback."""

    def package(self, files: Path, manifest: dict[str, Any]) -> bool:
        shutil.copytree(self.root(), files, symlinks=True, ignore=shutil.ignore_patterns(*SKIP))
        manifest.update(workdir="files", run=None, static={"root": "files", "spa": self.plan.spa})
        return True

    def root(self) -> Path:
        plan, workdir, work = self.plan, self.site.workdir, self.site.work
        if plan.static_root is not None:
            root = workdir / plan.static_root
        else:
            root = next((workdir / d for d in ("build", "dist") if (workdir / d).is_dir()), workdir)
            if root == workdir and not (root / "index.html").is_file():
                raise BuildFailure("the build script produced neither build/ nor dist/", "build")
        if not (root / "index.html").is_file():
            raise BuildFailure(f"the static site has no index.html in {root.relative_to(work) or '.'}")
        return root


class GoBuild(LanguageBuild):
    """Go: the machine's go (checked against go.mod's go line), the module graph fetched once into the shared
    cache, and the module pins read back from the built binaries (``go version -m``)."""

    def __init__(self, site: BuildSite) -> None:
        super().__init__(site)
        self.go: str | None = None  # the machine's go, once checked
        self.go_env: dict[str, str] = {}  # what the module download decided (GOPROXY=off for a known graph)
        self.go_pins: list[tuple[str, str]] = []
        self.stage_sums: Path | None = None  # a Dockerfile's binary: the go.sum of its module in a build stage

    def env(self) -> dict[str, str]:
        return {**golang.build_env(self.site.cache_root), **self.go_env}

    def path(self) -> list[str]:
        return [str(Path(self.go).parent)] if self.go else []

    def check_toolchain(self) -> None:
        self.go = golang.require_go(self.site.env()["PATH"])
        self.toolchain = golang.machine_version(self.go, self.site.env())
        asked = golang.asked_version(self.site.workdir)
        golang.check_version(asked, self.toolchain)
        self.site.log(f"Go: go.mod asks for go {asked or '(no go line)'}; built with this machine's {self.toolchain}")

    def install(self) -> bool:
        assert self.go
        if (self.site.workdir / "go.mod").is_file():
            self.go_env = golang.download(self.go, self.site.workdir, self.site.env(), self.site.cache_root,
                                          self.site.log)
        return True

    def from_dockerfile(self, source: Path, dockerfile: str) -> None:
        """A Go binary a Dockerfile's last stage starts (built in a golang stage, copied onto alpine, distroless,
        scratch...): its modules read back with the machine's go, as for a Go build's binaries, and the go.sum of
        its module in the build stage kept as the artifact's Go lock."""
        binary = _started_program(self.plan.run, self.site.workdir, self.site.work)
        go = golang.go_binary(self.site.env()["PATH"])
        if binary is None or go is None:
            return
        env = self.site.env()
        self.go_pins = golang.pins(go, [binary], env)
        self.site.log(f"{binary.relative_to(self.site.work.resolve())}: {len(self.go_pins)} pinned Go modules")
        for name, version in self.go_pins:
            self.site.log(f"  {name} {version}")
        module = golang.main_module(go, binary, env)
        if module and self.site.stages.is_dir():
            self.stage_sums = golang.module_sums(self.site.stages, module)

    def package(self, files: Path, manifest: dict[str, Any]) -> bool:
        if self.stage_sums is not None and not (self.site.workdir / "go.sum").is_file():
            files.parent.joinpath("go.sum").write_bytes(self.stage_sums.read_bytes())
            manifest["lock"]["go"] = "go.sum"
        return False

    def built(self) -> None:
        if self.go:
            binaries = sorted(p for p in (self.site.workdir / "bin").glob("*") if p.is_file())
            self.go_pins = golang.pins(self.go, binaries, self.site.env())
            for name, version in self.go_pins:
                self.site.log(f"  {name} {version}")

    def scan_inputs(self) -> ScanInputs:
        return ScanInputs(go_pins=self.go_pins)

    def pins(self, manifest: dict[str, Any]) -> None:
        if (self.site.workdir / "go.sum").is_file():
            manifest["lock"]["go"] = manifest["workdir"] + "/go.sum"
        manifest["dependencies"] += [{"ecosystem": "Go", "name": n, "version": v} for n, v in self.go_pins]


class JavaLanguageBuild(LanguageBuild):
    """Java: Maven or Gradle (:class:`~cellplane.build.languages.java.JavaBuild`) in the build step, unless
    ``build.command`` replaces it; a Dockerfile's jar is read for its Maven pins."""

    def __init__(self, site: BuildSite) -> None:
        super().__init__(site)
        self.java: JavaBuild | None = None
        self.jar_pins: list[dict[str, str]] = []  # a Dockerfile's jar: the Maven pins it runs with
        self.maven_file = "pom.xml"  # where Maven findings point

    def env(self) -> dict[str, str]:
        return self.java.env() if self.java else {}

    def check_toolchain(self) -> None:
        if self.plan.build_commands:  # build.command, when set, replaces the tool's
            return
        self.java = JavaBuild(self.site.workdir, self.site.cache_root, self.site.component_type, self.site.log)
        self.java.prepare(self.site.files())

    def install(self) -> bool:
        if self.java is None:
            return False
        self.site.log(f"dependencies: resolved by {self.java.command.split()[0]} in the build step, into the "
                      "shared repository of the build cache")
        return True

    def from_dockerfile(self, source: Path, dockerfile: str) -> None:
        if self.plan.run:
            self._jar_pins(self.plan.run, "pom.xml" if (source / "pom.xml").is_file() else dockerfile)

    def _jar_pins(self, run: str, build_file: str) -> None:
        """The Maven pins of the jar a Dockerfile's last stage starts (bundled jars and ``lib/``, as for a Maven
        build), for the manifest and the scan; a jar the command does not name plainly has none."""
        work = self.site.work
        jar = java.started_jar(run, self.site.workdir, work)
        if jar is None:
            return
        lib = jar.parent / "lib"
        try:
            self.jar_pins = java.pins(jar, lib if lib.is_dir() else None, self.site.cache_root / "maven" / "repository")
        except (zipfile.BadZipFile, OSError) as e:  # not a jar after all: nothing to pin, the start says the rest
            self.site.log(f"note: {jar.relative_to(work)} cannot be read as a jar ({e}); no Maven pins recorded")
            return
        self.maven_file = build_file
        self.site.log(f"{jar.relative_to(work)}: {len(self.jar_pins)} pinned dependencies")

    def has_build_tool(self) -> bool:
        return self.java is not None

    def build(self) -> bool:
        if self.java is None:
            return False
        plan = self.plan
        self.java.build(self.site.env())
        if plan.run is None:
            runnable = self.java.finish()
            plan.run = runnable.run
            plan.reason = plan.reason.rstrip(".") + f": {runnable.jar.name}."
        else:  # a Procfile or build.run says what starts the app: the jar is looked for only for its pins
            try:
                self.java.finish()
            except BuildFailure as e:
                self.site.log(f"note: {e.message}; the start command is {plan.run}")
        return True

    def scan_inputs(self) -> ScanInputs:
        if self.java:
            return ScanInputs(maven_pins=self.java.maven_pins(), maven_file=self.java.build_file)
        return ScanInputs(maven_pins=[(d["name"], d["version"]) for d in self.jar_pins], maven_file=self.maven_file)

    def package(self, files: Path, manifest: dict[str, Any]) -> bool:
        runnable = self.java.runnable if self.java else None
        if self.java is None or runnable is None or self.plan.run != runnable.run:
            return False
        self.java.package(files)  # the runnable jar (and its lib/) is all that runs
        manifest["workdir"] = "files"
        return True

    def pins(self, manifest: dict[str, Any]) -> None:
        if self.java:
            manifest["java"] = self.java.record()
            manifest["dependencies"] += self.java.dependencies
        manifest["dependencies"] += self.jar_pins


class InterpreterBuild(LanguageBuild):
    """PHP and Ruby run on the machine's interpreter: it must be there; nothing is installed."""

    program = ""
    title = ""
    package_name = ""  # Debian's
    version_flag = "--version"

    def check_toolchain(self) -> None:
        found = shutil.which(self.program, path=self.site.env()["PATH"])
        if found is None:
            raise BuildFailure(f"this is a {self.title} app, and {self.program} is not installed on the build "
                               f"machine; install it (Debian: apt-get install {self.package_name}; make buildtools "
                               "does)", "build")
        version = subprocess.run([found, self.version_flag], capture_output=True, text=True,
                                 check=False).stdout.splitlines()
        self.toolchain = version[0] if version else self.program

    def install(self) -> bool:
        self.site.log(f"runs on the machine's {self.toolchain}; no dependencies to install")
        return True


class PhpBuild(InterpreterBuild):
    program, title, package_name, version_flag = "php", "PHP", "php-cli", "-v"


class RubyBuild(InterpreterBuild):
    """Ruby: vendored gems (``vendor/cache``) are installed by the build's ``bundle`` command, so bundler must
    be there too; Gemfile.lock's pins go in the manifest."""

    program, title, package_name = "ruby", "Ruby", "ruby"

    def check_toolchain(self) -> None:
        super().check_toolchain()
        if self._bundles() and shutil.which("bundle", path=self.site.env()["PATH"]) is None:
            raise BuildFailure("the Gemfile's vendored gems are installed with bundler, which is not installed on "
                               "the build machine; install it (Debian: apt-get install ruby-bundler; make "
                               "buildtools does)", "Gemfile")

    def install(self) -> bool:
        if not self._bundles():
            return super().install()
        self.site.log(f"runs on the machine's {self.toolchain}; the gems in vendor/cache are installed by the build")
        return True

    def _bundles(self) -> bool:
        return any(c.startswith("bundle ") for c in self.plan.build_commands)

    def pins(self, manifest: dict[str, Any]) -> None:
        lock = self.site.workdir / "Gemfile.lock"
        if lock.is_file():
            manifest["lock"]["ruby"] = manifest["workdir"] + "/Gemfile.lock"
            manifest["dependencies"] += [{"ecosystem": "RubyGems", "name": n, "version": v}
                                         for n, v in ruby.locked_gems(lock.read_text())]


def _started_program(run: str | None, workdir: Path, root: Path) -> Path | None:
    """The file a start command's first word names in the work tree (``usr/local/bin/app``, ``./app``), or None."""
    try:
        words = shlex.split(run or "")
    except ValueError:
        return None
    if not words or words[0].startswith("/"):
        return None
    path = (workdir / words[0]).resolve()
    return path if path.is_file() and path.is_relative_to(root.resolve()) else None


BUILDS: dict[str, type[LanguageBuild]] = {
    "python": PythonBuild,
    "node": NodeBuild,
    "static": StaticBuild,
    "go": GoBuild,
    "java": JavaLanguageBuild,
    "php": PhpBuild,
    "ruby": RubyBuild,
}


def for_plan(plan: Plan, site: BuildSite) -> LanguageBuild:
    """The steps of the plan's language (the base class, which adds none, for ``binary``)."""
    return BUILDS.get(plan.language, LanguageBuild)(site)
