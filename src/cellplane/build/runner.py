"""One build, from source to a packed artifact: ``python -m cellplane.build.runner JOB.json``.

The control plane's worker pool starts this module in a process group of its own, with a timeout and a
memory cap, and reads its standard output: one JSON event per line (``step``, ``log``, ``detection``,
``findings`` and, last, ``result``). The runner never touches the database; everything it produces
lives in the build's directory (``source/``, ``work/``, ``stage/``, ``out/artifact.tar.gz``).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from cellplane.build import archive, detect, isolation, scans, toolchains
from cellplane.build.languages import builds
from cellplane.build.languages.interface import SKIP, LanguageBuild, SourceFiles
from cellplane.build.osv import OsvDatabase
from cellplane.build.plan import BuildFailure, Plan
from cellplane.digests import sha256_file
from cellplane.errors import CellplaneError
from cellplane.runtime import materialize
from cellplane.runtime.materialize import DependencyCache
from cellplane.sourcetree import subdirectory

STEPS = ("source", "detect", "dependencies", "build", "test", "scan", "package")
MANIFEST = "manifest.json"
SCHEMA = "cellplane.dev/artifact/v1"
GIT_TIMEOUT = 300


def emit(event: str, **fields: Any) -> None:
    sys.stdout.write(json.dumps({"e": event, **fields}, default=str) + "\n")
    sys.stdout.flush()


@dataclass
class Job:
    dir: Path
    cache: DependencyCache
    source: dict[str, Any]
    component: dict[str, Any]
    policy: dict[str, Any] = field(default_factory=dict)
    osv_database: str | None = None
    upload_limits: dict[str, int] = field(default_factory=dict)
    memory_mb: int | None = None
    data_dir: str | None = None  # the control plane's data directory, hidden from the build

    @classmethod
    def load(cls, path: Path) -> Job:
        raw = json.loads(path.read_text())
        cache = DependencyCache(Path(raw["cache"]), raw.get("pythonInstaller") or "auto")
        return cls(Path(raw["dir"]), cache, raw["source"], raw.get("component", {}),
                   raw.get("policy") or {}, raw.get("osvDatabase"), raw.get("uploadLimits") or {},
                   raw.get("memoryMb"), raw.get("dataDir"))


class Build:
    def __init__(self, job: Job) -> None:
        self.job = job
        self.step = "source"
        self.plan: Plan | None = None
        self.venv: Path | None = None
        self.python_lock: str = ""
        self.commit: str | None = None
        self.findings: list[scans.Finding] = []
        self.language: LanguageBuild | None = None  # the plan's language's steps, once there is a plan
        for sub in ("source", "work", "stage", "out", "home", "tmp"):
            shutil.rmtree(job.dir / sub, ignore_errors=True)
            (job.dir / sub).mkdir(parents=True)

    # -- plumbing ------------------------------------------------------------------------------------------

    def log(self, line: str) -> None:
        emit("log", step=self.step, line=line)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        self.step = name
        started = time.monotonic()
        emit("step", step=name, state="running")
        try:
            yield
        except BaseException:
            emit("step", step=name, state="failed", seconds=round(time.monotonic() - started, 3))
            raise
        emit("step", step=name, state="succeeded", seconds=round(time.monotonic() - started, 3))

    def detected(self, plan: Plan) -> None:
        """Report the plan (again, once the build knows more: a Dockerfile's, the jar that starts a Java app)."""
        emit("detection", strategy=plan.strategy, reason=plan.reason, language=plan.language, run=plan.run,
             port=plan.port, processes=plan.processes, notes=plan.notes, languageVersion=plan.language_version)

    def skip(self, name: str, why: str) -> None:
        emit("step", step=name, state="skipped", detail=why)

    def env(self) -> dict[str, str]:
        env = materialize.base_env(self.job.cache)
        env.update({"HOME": str(self.job.dir / "home"), "TMPDIR": str(self.job.dir / "tmp"), "CI": "true",
                    "PYTHONDONTWRITEBYTECODE": "1"})
        path = [str(self.workdir / "node_modules" / ".bin")]
        if self.venv:
            path.insert(0, str(self.venv / "bin"))
            env["VIRTUAL_ENV"] = str(self.venv)
            env["PYTHONPATH"] = os.pathsep.join(str(p) for p in (self.workdir / "src", self.workdir) if p.is_dir())
        if self.language:
            env.update(self.language.env())
            path += self.language.path()
        env["PATH"] = os.pathsep.join([*path, env["PATH"]])
        if self.plan:
            env.update(self.plan.env)
        return env

    @property
    def work(self) -> Path:
        return self.job.dir / "work"

    @property
    def workdir(self) -> Path:
        return self.work / (self.plan.workdir if self.plan else "")

    @property
    def cache_root(self) -> Path:
        return self.job.cache.root

    @property
    def component_type(self) -> str:
        return self.job.component.get("type") or "service"

    @property
    def stages(self) -> Path:
        """Where a Dockerfile's build stages are built, one directory each."""
        return self.job.dir / "work-stages"

    def files(self) -> SourceFiles:
        return detect.tree(self.workdir)

    @property
    def steps(self) -> LanguageBuild:
        """The steps of the plan's language (:mod:`cellplane.build.languages.builds`)."""
        assert self.language is not None
        return self.language

    def shell(self, command: str, cwd: Path, what: str, extra_env: dict[str, str] | None = None) -> None:
        self.log(f"$ {command}")
        materialize.run(["/bin/sh", "-c", command], cwd=cwd, env={**self.env(), **(extra_env or {})}, log=self.log,
                        what=what)

    # -- steps ---------------------------------------------------------------------------------------------

    def fetch(self) -> Path:
        src = self.job.source
        dest = self.job.dir / "source"
        if src.get("kind") == "archive":
            limits = archive.UploadLimits(**self.job.upload_limits)
            try:
                count = archive.unpack(Path(src["archive"]), dest, limits)
            except CellplaneError as e:
                raise BuildFailure(e.message, "archive") from None
            self.log(f"unpacked the uploaded archive: {count} files")
        else:
            self.clone(src["repository"], src.get("branch"), src.get("ref"), dest)
        try:
            return subdirectory(dest, src.get("path") or ".")
        except CellplaneError as e:
            raise BuildFailure(e.message, "source.path") from None

    def clone(self, repository: str, branch: str | None, ref: str | None, dest: Path) -> None:
        git = ["git", "-c", "protocol.ext.allow=never", "-c", "advice.detachedHead=false"]
        args = [*git, "clone", "--quiet"]
        if not ref:
            args += ["--depth", "1", "--no-tags"] + (["--branch", branch] if branch else [])
        where = f"{repository}" + (f" at {ref or branch}" if ref or branch else "")
        self.log(f"cloning {where}")
        env = {**materialize.base_env(self.job.cache), "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true"}
        materialize.run([*args, "--", repository, str(dest)], cwd=self.job.dir, env=env, log=self.log,
                        what=f"git clone of {repository}", timeout=GIT_TIMEOUT)
        if ref:
            materialize.run([*git, "-C", str(dest), "checkout", "--quiet", "--detach", ref, "--"], cwd=self.job.dir,
                            env=env, log=self.log, what=f"git checkout of '{ref}'", timeout=GIT_TIMEOUT)
        head = subprocess.run(["git", "-C", str(dest), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=False, env=env)
        self.commit = head.stdout.strip() or None
        if self.commit:
            self.log(f"at commit {self.commit}")
            emit("source", commit=self.commit)

    def endpoint_port(self) -> int | None:
        ports = [e.get("port") for e in self.job.component.get("endpoints") or [] if isinstance(e, dict)]
        return ports[0] if ports else None

    def shown(self) -> str:
        """The source as its user knows it, for messages: never this machine's build directory."""
        path = (self.job.source.get("path") or ".").strip("/") or "."
        return "the source" if path == "." else f"{path} (source.path)"

    def choose(self, source: Path) -> detect.Detection:
        c = self.job.component
        return detect.detect(source, c.get("build") or {}, c.get("type") or "service", self.endpoint_port(),
                             shown=self.shown())

    def prepare_tree(self, source: Path, found: detect.Detection) -> None:
        if found.dockerfile:
            from cellplane.build import dockerfile  # only Dockerfile builds need the translator

            build = self.job.component.get("build") or {}
            plan = dockerfile.prepare(source / found.dockerfile, source, self.work, _Hooks(self),
                                      stages_dir=self.stages)
            plan.test = plan.test or build.get("test")
            plan.port = self.endpoint_port() or plan.port
            if build.get("run"):
                plan.run = build["run"]
            if build.get("command"):
                plan.build_commands.append(build["command"])
            self.plan = plan
            self.language = builds.for_plan(plan, self)
            self.steps.from_dockerfile(source, found.dockerfile)
        else:
            shutil.copytree(source, self.work, symlinks=True, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns(".git", "node_modules", ".venv", "__pycache__"))
            self.plan = found.plan
            self.language = builds.for_plan(found.plan, self)

    def install(self) -> None:
        plan = self.plan
        assert plan
        if self.steps.uses_python():
            self.install_python(plan.python_inputs, plan.python_packages)
        if plan.node_install and (self.workdir / "package.json").exists():
            materialize.npm_install(self.workdir, plan.node_install, self.job.cache, self.log)
        self.steps.check_toolchain()
        if not self.steps.install() and not self.venv and not plan.node_install:
            self.log("no dependencies to install")

    def install_python(self, inputs: list[str], packages: list[str]) -> None:
        files = [self.work / p for p in inputs]
        missing = [p for p in inputs if not (self.work / p).is_file()]
        if missing:
            raise BuildFailure(f"dependency file {missing[0]} does not exist", missing[0])
        self.python_lock = materialize.python_lock(files, packages, self.job.dir / "tmp", self.job.cache, self.log)
        lock = self.job.dir / "stage" / "requirements.lock"
        lock.write_text(self.python_lock)
        for name, version, _ in scans.parse_requirements_pins(self.python_lock):
            self.log(f"  {name}=={version}")
        self.venv = materialize.python_venv(lock, self.job.cache, self.log)

    def build_commands(self) -> bool:
        plan = self.plan
        assert plan
        if self.steps.build():
            self.detected(plan)
        for command in plan.build_commands:
            self.shell(command, self.workdir, f"build command '{command}'")
        self.steps.built()
        return bool(plan.build_commands)

    def run_tests(self) -> bool:
        plan = self.plan
        assert plan
        if not plan.test:
            return False
        try:
            self.shell(plan.test, self.workdir, "the unit tests", {"PORT": "0"})
        except BuildFailure as e:
            self.findings.append(scans.Finding("test", "unit-tests", "high", "", 0, e.message))
            self.log(f"unit tests failed: {e.message}")
        return True

    def scan(self) -> list[scans.Finding]:
        plan = self.plan
        assert plan
        self.log("scanning for secrets (detect-secrets)")
        found = scans.scan_secrets(self.work)
        if self.steps.scans_python_code() or any(self.work.rglob("*.py")):
            self.log("static analysis (bandit)")
            found += scans.scan_python(self.workdir)
        db = None
        if self.job.osv_database:
            db = OsvDatabase.load(Path(self.job.osv_database))
            self.log(f"dependency vulnerabilities: OSV database {self.job.osv_database}")
        else:
            self.log("dependency vulnerabilities: no OSV database configured, skipped")
        node_lock = self.workdir / "package-lock.json"
        python_lock = self.job.dir / "stage" / "requirements.lock"
        pins = self.steps.scan_inputs()
        found += scans.scan_dependencies(db, python_lock if self.python_lock else None,
                                         node_lock if node_lock.is_file() else None, pins.go_pins,
                                         pins.maven_pins, pins.maven_file)
        self.findings.extend(found)
        for f in self.findings:
            where = f" {f.file}:{f.line}" if f.file else ""
            self.log(f"[{f.severity}] {f.kind} {f.rule}{where}: {f.message}")
        summary = scans.summarise(self.findings)
        self.log(f"findings: {json.dumps(summary) if self.findings else 'none'}")
        return scans.Policy.from_spec({"failOn": self.job.policy}).blocking(self.findings)

    def package(self) -> tuple[Path, str, dict[str, Any]]:
        plan = self.plan
        assert plan
        stage = self.job.dir / "stage"
        files = stage / "files"
        manifest: dict[str, Any] = {
            "schema": SCHEMA, "strategy": plan.strategy, "reason": plan.reason, "language": plan.language,
            "languageVersion": plan.language_version, "run": plan.run, "processes": plan.processes,
            "port": plan.port, "env": plan.env, "workdir": "files/" + plan.workdir if plan.workdir else "files",
            "lock": {}, "dependencies": [],
        }
        if plan.labels:
            manifest["labels"] = plan.labels
        if plan.readiness:
            manifest["readiness"] = plan.readiness
        if plan.liveness:
            manifest["liveness"] = plan.liveness
        if not self.steps.package(files, manifest):
            shutil.copytree(self.work, files, symlinks=True, ignore=shutil.ignore_patterns(*SKIP, "*.pyc"))
        if self.python_lock:
            manifest["lock"]["python"] = "requirements.lock"
            manifest["dependencies"] += [{"ecosystem": "PyPI", "name": n, "version": v}
                                         for n, v, _ in scans.parse_requirements_pins(self.python_lock)]
        else:
            (stage / "requirements.lock").unlink(missing_ok=True)
        self.steps.pins(manifest)
        if self.steps.toolchain:
            manifest["toolchain"] = self.steps.toolchain
        (stage / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        out = self.job.dir / "out" / "artifact.tar.gz"
        archive.pack(stage, out)
        digest = sha256_file(out)
        size = out.stat().st_size
        self.log(f"artifact {digest} ({size} bytes, {len(manifest['dependencies'])} pinned dependencies)")
        return out, digest, manifest

    # -- the whole build -----------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        with self.stage("source"):
            source = self.fetch()
        with self.stage("detect"):
            found = self.choose(source)
            self.log(f"strategy: {found.plan.strategy} — {found.plan.reason}")
            if not found.dockerfile:  # recorded now, so a build failing in its dependencies still says it
                self.detected(found.plan)
        with self.stage("dependencies"):
            if found.dockerfile:
                self.log(f"running the steps of {found.dockerfile} without Docker")
            self.prepare_tree(source, found)
            if not found.dockerfile:
                self.install()
        plan = self.plan
        assert plan
        for note in plan.notes:
            self.log(f"note: {note}")
        self.detected(plan)
        if plan.build_commands or self.steps.has_build_tool():
            with self.stage("build"):
                self.build_commands()
        else:
            self.skip("build", "no build command")
        if plan.test:
            with self.stage("test"):
                self.run_tests()
        else:
            self.skip("test", "no test command (build.test)")
        with self.stage("scan"):
            blocking = self.scan()
            emit("findings", findings=[f.to_dict() for f in self.findings], summary=scans.summarise(self.findings),
                 blocking=len(blocking))
            if blocking:
                first = blocking[0]
                where = f" in {first.file}:{first.line}" if first.file else ""
                more = f" (and {len(blocking) - 1} more)" if len(blocking) > 1 else ""
                raise BuildFailure(f"the build policy blocks this build: {first.kind} {first.rule}{where}{more}")
        with self.stage("package"):
            path, digest, manifest = self.package()
        return {"artifact": str(path), "digest": digest, "manifest": manifest}


class _Hooks:
    """The runner's side of a translated Dockerfile: its RUN steps, in order."""

    def __init__(self, build: Build) -> None:
        self.build = build

    def pip(self, inputs: list[str], packages: list[str], line: int) -> None:
        self.build.log(f"Dockerfile line {line}: installing Python dependencies")
        self.build.install_python(inputs, packages)

    def npm(self, cwd: Path, install: Literal["ci", "install"], line: int) -> None:
        self.build.log(f"Dockerfile line {line}: npm {install}")
        materialize.npm_install(cwd, install, self.build.job.cache, self.build.log)

    def shell(self, cwd: Path, command: str, env: dict[str, str], line: int) -> None:
        tools = toolchains.build_env(self.build.job.cache.root, self.build.env()["PATH"])
        self.build.shell(command, cwd, f"Dockerfile line {line}", {**tools, **env})


def relative(message: str, job: Job) -> str:
    """``message`` with this machine's build directories taken out: files are named relative to the source
    (``work/`` and ``source/`` are copies of it), anything else of the build as ``<build>``."""
    for tree in (job.dir / "work", job.dir / "source"):
        message = message.replace(f"{tree}/", "").replace(str(tree), ".")
    return message.replace(str(job.dir), "<build>")


def _become_subreaper() -> None:
    """Orphaned grandchildren are re-parented to this process, so the worker can find and stop all of them."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER


def _isolate(job: Job) -> str | None:
    """Hide the data directory (keys, tokens, database, other builds); returns a note when that is not possible."""
    if not job.data_dir:
        return None
    keep = [job.dir, job.cache.root] + ([Path(job.osv_database)] if job.osv_database else [])
    try:
        why = isolation.hide_data_dir(Path(job.data_dir), keep)
    except OSError as e:
        emit("result", ok=False, step="source", error=f"the build could not be isolated: {e}")
        sys.exit(1)
    return f"not isolated from the control plane's data directory: {why}" if why else None


def _limit_memory(megabytes: int | None) -> None:
    """No single process of the build may map more than the build's whole memory cap (the worker's watchdog
    bounds the sum); no core dumps."""
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if megabytes:
            resource.setrlimit(resource.RLIMIT_DATA, (megabytes << 20, megabytes << 20))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m cellplane.build.runner JOB.json", file=sys.stderr)
        return 2
    _become_subreaper()
    job = Job.load(Path(args[0]))
    _limit_memory(job.memory_mb)
    isolated = _isolate(job)
    build = Build(job)
    if isolated:
        build.log(f"note: {isolated}")
    try:
        result = build.run()
    except BuildFailure as e:
        emit("result", ok=False, step=build.step, error=relative(e.message, job), where=relative(e.where, job),
             commit=build.commit)
        return 1
    except Exception as e:  # a bug in the runner: report it as a failed build, never a silent exit
        emit("log", step=build.step, line=f"internal error: {type(e).__name__}: {e}")
        emit("result", ok=False, step=build.step, error=relative(f"internal error in step {build.step}: {e}", job),
             commit=build.commit)
        return 1
    emit("result", ok=True, commit=build.commit, **result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
