"""Choose how a component is built and started, from its settings and the files in its source.

Rules, first match wins (every :class:`Plan` says in ``reason`` which one matched and why):

a. explicit settings: ``build.mode`` "command", or ``build.run`` / ``build.command`` with mode "auto"
   -> strategy "explicit"; modes "procfile" and "dockerfile" force those strategies.
   A ``build.dockerfile`` path with mode "auto" also picks the Dockerfile strategy.
b. a ``Procfile`` -> strategy "procfile" (its ``web`` process serves the endpoints).
c. a ``Dockerfile`` -> strategy "dockerfile"; the caller translates it (``cellplane.build.dockerfile``).
c2. a ``pom.xml`` or ``build.gradle[.kts]`` -> strategy "java" (``cellplane.build.languages.java``).
c3. a ``go.mod`` -> strategy "go" (``cellplane.build.languages.golang``).
c4. a ``composer.json`` or ``index.php`` -> strategy "php" (``cellplane.build.languages.php``); a Ruby app
   without a Procfile is refused with the line that says what to add.
d. Python files (requirements.txt, pyproject.toml, setup.py) -> strategy "python".
e. a ``package.json`` -> strategy "node", or "static" for a web app with a build script.
f. Python source files without any of the above -> strategy "python".
g. an ``index.html`` -> strategy "static".
h. nothing fits: a project file of a language that is not built here (``*.csproj``, ``Cargo.toml``, ...)
   is named in the one-line failure (``cellplane.build.languages.unsupported``).

Messages name files relative to the source, and the source as the user knows it (``shown``), never the
build machine's directories.

Detection only reads files (never runs anything), never follows a path out of the source tree,
and reports malformed inputs as a :class:`BuildFailure` naming the file.
"""

from __future__ import annotations

import ast
import json
import re
import shlex
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from cellplane.build.languages import commands, golang, java, php, ruby, unsupported
from cellplane.build.plan import BuildFailure, Language, Plan
from cellplane.model.component import TASK_TYPES

SERVICE_TYPES = frozenset({"service", "web-app", "webhook", "api-proxy"})
MODES = ("auto", "procfile", "dockerfile", "command")
LANGUAGES: tuple[Language, ...] = ("python", "node", "static", "go", "java", "php", "ruby")
MAX_FILE_BYTES = 1 << 20  # detection reads small declaration files only
MAX_SCANNED_PACKAGES = 20

PYTHON_MARKERS = ("requirements.txt", "pyproject.toml", "setup.py")
APP_MODULES = ("app", "main", "wsgi", "asgi", "server", "application")
SCRIPT_STARTS = ("app.py", "main.py")
WSGI_FRAMEWORKS = frozenset({"Flask", "Bottle"})
ASGI_FRAMEWORKS = frozenset({"FastAPI", "Starlette", "Quart", "Litestar"})
NODE_LOCKFILES = ("package-lock.json", "npm-shrinkwrap.json")
OTHER_NODE_LOCKFILES = ("yarn.lock", "pnpm-lock.yaml", "bun.lockb")
LOOKED_FOR = (
    "a Procfile, a Dockerfile, pom.xml, build.gradle, go.mod, composer.json, index.php, requirements.txt, "
    "pyproject.toml, setup.py, *.py files, package.json or index.html"
)

_PROCFILE_LINE = re.compile(r"^([A-Za-z0-9_-]+)\s*:\s*(.*)$")
_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)\s*(\[[^\]]*\])?")
_EGG = re.compile(r"#egg=([A-Za-z0-9][A-Za-z0-9._-]*)")
_BIND = re.compile(r"^(?:\[[0-9a-fA-F:.]*\]|[A-Za-z0-9.-]*):(\d{1,5})$")
_PORT_ENV = re.compile(r"""["']PORT["']""")


@dataclass
class Detection:
    """What :func:`detect` decided.

    ``plan`` is complete for every strategy except "dockerfile": then the Dockerfile at
    ``dockerfile`` (relative to the source, POSIX-style) says how to build and start, and the plan
    carries only what the settings and the component say (reason, port, test, language version,
    and ``build.command`` / ``build.run`` when set, as overrides the caller may honour).
    """

    plan: Plan
    dockerfile: str | None = None


@dataclass(frozen=True)
class _Settings:
    """The component's ``build`` mapping, cleaned: empty strings are "not set"."""

    mode: str = "auto"
    dockerfile: str | None = None
    command: str | None = None
    run: str | None = None
    language: Language | None = None
    language_version: str | None = None
    test: str | None = None

    @classmethod
    def parse(cls, build: Any) -> _Settings:
        """Accept the ``build`` mapping, or the model's ``Build`` object (anything with ``model_dump``)."""
        if hasattr(build, "model_dump"):
            build = build.model_dump()
        build = build or {}

        def text(key: str) -> str | None:
            value = build.get(key)
            if value is None:
                return None
            if not isinstance(value, str):
                raise BuildFailure(f"build.{key} must be a string", where=f"build.{key}")
            return value.strip() or None

        mode = text("mode") or "auto"
        if mode not in MODES:
            raise BuildFailure(f"build.mode must be one of {', '.join(MODES)} (it is '{mode}')", where="build.mode")
        language = text("language")
        if language is not None:
            language = language.lower()
            if language not in LANGUAGES:
                raise BuildFailure(
                    f"build.language must be one of {', '.join(LANGUAGES)} (it is '{language}')",
                    where="build.language",
                )
        return cls(mode=mode, dockerfile=text("dockerfile"), command=text("command"), run=text("run"),
                   language=language, language_version=text("languageVersion"),
                   test=text("test"))


class _Tree:
    """Read-only access to the source tree that never leaves it (symlinks included)."""

    def __init__(self, source: Path, shown: str = "the source") -> None:
        self.shown = shown  # the source as the user knows it: never the build machine's directory
        if not source.is_dir():
            raise BuildFailure(f"{shown} does not exist as a directory", where="source.path")
        self.root = source.resolve()

    def _inside(self, rel: str, strict: bool = True) -> Path | None:
        """The resolved path of ``rel``; None if absent (or, unless ``strict``, if it leaves the tree)."""
        path = self.root / rel
        if not path.exists() and not path.is_symlink():
            return None
        resolved = path.resolve()
        if not resolved.is_relative_to(self.root):
            if not strict:
                return None
            raise BuildFailure(f"{rel} points outside the source directory", where=rel)
        return resolved

    def is_file(self, rel: str, strict: bool = True) -> bool:
        path = self._inside(rel, strict)
        return path is not None and path.is_file()

    def is_dir(self, rel: str, strict: bool = True) -> bool:
        path = self._inside(rel, strict)
        return path is not None and path.is_dir()

    def read(self, rel: str) -> str:
        """The UTF-8 text of ``rel``; a BuildFailure when it is too big or not text."""
        path = self._inside(rel)
        if path is None or not path.is_file():
            raise BuildFailure(f"{rel} does not exist in {self.shown}", where=rel)
        if path.stat().st_size > MAX_FILE_BYTES:
            raise BuildFailure(f"{rel} is larger than {MAX_FILE_BYTES // 1024} KiB", where=rel)
        try:
            return path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError as e:
            raise BuildFailure(f"{rel} is not UTF-8 text ({e.reason} at byte {e.start})", where=rel) from e

    def read_optional(self, rel: str) -> str | None:
        return self.read(rel) if self.is_file(rel) else None

    def top_level(self, suffix: str) -> list[str]:
        return sorted(p.name for p in self.root.iterdir()
                      if p.name.endswith(suffix) and self.is_file(p.name, strict=False))

    def top_dirs(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir()
                      if not p.name.startswith(".") and self.is_dir(p.name, strict=False))

    def packages(self, under: str = "") -> list[str]:
        """Directories (relative paths) holding an ``__init__.py``, directly under ``under``."""
        if not self.is_dir(under or ".", strict=False):
            return []
        found = []
        for child in sorted((self.root / under).iterdir()):
            rel = f"{under}/{child.name}" if under else child.name
            if child.name.startswith((".", "_")) or child.name in ("tests", "test"):
                continue
            if self.is_dir(rel, strict=False) and self.is_file(f"{rel}/__init__.py", strict=False):
                found.append(rel)
        return found[:MAX_SCANNED_PACKAGES]


def detect(source: Path, build: Mapping[str, Any] | None, component_type: str = "service",
           endpoint_port: int | None = None, shown: str = "the source") -> Detection:
    """Decide how to build and start the component whose source (sub-path applied) is ``source``.

    ``build`` is the component spec's ``build`` mapping (mode, dockerfile, command, run, language,
    languageVersion, test; all optional). Raises :class:`BuildFailure` with a one-line message when
    nothing fits or a declaration file is malformed; ``shown`` names the source in it ("the source",
    "services/api (source.path)").
    """
    settings = _Settings.parse(build)
    tree = _Tree(source, shown)
    detection = _choose(tree, settings, component_type)
    _finish(detection.plan, tree, settings, endpoint_port)
    return detection


def tree(source: Path) -> _Tree:
    """Read-only access to ``source`` that never leaves it (what a language module reads build files through)."""
    return _Tree(source)


def _choose(tree: _Tree, s: _Settings, component_type: str) -> Detection:
    """Apply the rules in order; the first that matches decides."""
    if s.mode == "command" or (s.mode == "auto" and (s.run or s.command)):
        return Detection(_explicit(tree, s, component_type))
    if s.mode == "procfile":
        if not tree.is_file("Procfile"):
            raise BuildFailure(f"build.mode is procfile but there is no Procfile in {tree.shown}", where="build.mode")
        return Detection(_procfile(tree, s, component_type))
    if s.mode == "dockerfile" or s.dockerfile:
        return _dockerfile(tree, s)
    if tree.is_file("Procfile"):
        return Detection(_procfile(tree, s, component_type))
    if tree.is_file("Dockerfile"):
        return _dockerfile(tree, s)
    if java.is_java(tree):
        return Detection(java.plan(tree, component_type))
    if tree.is_file("go.mod"):
        return Detection(golang.plan(tree))
    if php.found(tree):
        return Detection(php.plan(tree, component_type))
    if any(tree.is_file(marker) for marker in PYTHON_MARKERS):
        return Detection(_python(tree))
    if tree.is_file("package.json"):
        return Detection(_node(tree, component_type))
    if tree.top_level(".py"):
        return Detection(_python(tree))
    if tree.is_file("index.html"):
        return Detection(_static(tree, component_type))
    ruby.refuse_without_procfile(tree)
    unsupported.refuse(tree)
    raise BuildFailure(
        f"cannot tell how to build {tree.shown}: looked for {LOOKED_FOR} and found none; "
        "add one, or set build.run and build.language",
        where="build",
    )


def _detect_language(tree: _Tree) -> Language | None:
    """The runtime the files ask for: Maven or Gradle files, go.mod, PHP's files, Python declarations, package.json,
    Python files, Ruby's files (a stray script or a docs Gemfile must not turn a Python or Node.js app into Ruby),
    index.html."""
    if java.is_java(tree):
        return "java"
    if tree.is_file("go.mod"):
        return "go"
    if php.found(tree):
        return "php"
    if any(tree.is_file(marker) for marker in PYTHON_MARKERS):
        return "python"
    if tree.is_file("package.json"):
        return "node"
    if tree.top_level(".py"):
        return "python"
    if ruby.found(tree):
        return "ruby"
    if tree.is_file("index.html"):
        return "static"
    return None


def _language(tree: _Tree, s: _Settings, why: str, commands_run: tuple[str, ...] = ()) -> Language:
    """The language the settings name, else the one the files ask for, else the one the start commands
    (a Procfile's, ``build.run``) need."""
    language = s.language or _detect_language(tree) or _command_language(commands_run)
    if language is None:
        raise BuildFailure(
            f"{why}, but neither the files in {tree.shown} nor its commands tell which language runtime it needs "
            f"(no pom.xml, build.gradle, go.mod, composer.json, Gemfile, requirements.txt, pyproject.toml, *.py, "
            f"package.json or index.html); set build.language to {', '.join(LANGUAGES)}",
            where="build.language",
        )
    return language


def _command_language(commands_run: tuple[str, ...]) -> Language | None:
    for command in commands_run:
        language = commands.language_of(command)
        if language in LANGUAGES:
            return language
    return None


# --- a. explicit settings ---------------------------------------------------------------------------------------


def _explicit(tree: _Tree, s: _Settings, component_type: str) -> Plan:
    if s.mode == "command" and not (s.run or s.command):
        raise BuildFailure("build.mode is command but neither build.command nor build.run is set", where="build.mode")
    if s.mode == "command":
        setting = "build.mode is command"
    else:
        setting = "build.run is set" if s.run else "build.command is set"
    language = _language(tree, s, setting, tuple(c for c in (s.run,) if c))
    plan = Plan(strategy="explicit", reason="", language=language)
    _install_dependencies(plan, tree)
    if s.command:
        plan.build_commands = [s.command]
    if s.run:
        plan.run = s.run
        plan.reason = f"{setting}, so the app is built as {language} and started with build.run."
    else:
        plan.reason = f"{setting}, so it runs after the {language} dependencies are installed; " + _default_start(
            plan, tree, component_type)
    ignored = [name for name in ("Procfile", "Dockerfile") if tree.is_file(name, strict=False)]
    if s.dockerfile and s.dockerfile != "Dockerfile":
        ignored.append(f"build.dockerfile ({s.dockerfile})")
    plan.notes.extend(f"the {name} is not used because {setting}" for name in ignored)
    return plan


def _default_start(plan: Plan, tree: _Tree, component_type: str) -> str:
    """Fill in the start command a language would get without ``build.run``; returns the reason's tail."""
    if plan.language == "python":
        start = _python_start(tree, _python_info(tree))
        if start is None:
            raise BuildFailure("cannot tell how to start this Python app; set build.run", where="build.run")
        plan.run, plan.env = start.command, start.env
        return f"the start command is detected: {start.why}."
    if plan.language == "node":
        package = _package_json(tree)
        if component_type == "web-app":
            plan.language, plan.static_root, plan.run = "static", None, None
            return "the web app is served as the static files it writes to build/ or dist/."
        run, why = _node_start(tree, package) if package is not None else (None, "")
        if run is None:
            raise BuildFailure("cannot tell how to start this Node.js app: package.json has no start script; "
                               "set build.run", where="build.run")
        plan.run = run
        return f"the start command is {why}: {run}."
    if plan.language == "java":
        return "the runnable jar the build writes starts it."
    if plan.language == "go":
        module = golang.read_module(tree)
        plan.run = f"bin/{golang.binary_name(module, golang.single_main(module))}"
        return f"the start command is the binary go build writes: {plan.run}."
    if plan.language == "php":
        plan.run = php.plan(tree, component_type).run
        return f"the start command is PHP's built-in server: {plan.run}."
    if plan.language == "ruby":
        raise BuildFailure("cannot tell how to start this Ruby app; set build.run or add a Procfile "
                           "(web: ruby app.rb)", where="build.run")
    plan.static_root = None
    return "the static site is served from the build/ or dist/ directory it writes."


# --- b. Procfile ------------------------------------------------------------------------------------------------


def parse_procfile(text: str) -> dict[str, str]:
    """``name: command`` lines, in order; comments and blank lines are ignored."""
    processes: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _PROCFILE_LINE.match(line)
        if match is None:
            shown = line if len(line) <= 60 else line[:57] + "..."
            raise BuildFailure(f"Procfile line {number} is not 'name: command': {shown}", where="Procfile")
        name, command = match.group(1), match.group(2).strip()
        if not command:
            raise BuildFailure(f"Procfile line {number}: process '{name}' has no command", where="Procfile")
        if name in processes:
            raise BuildFailure(f"Procfile line {number}: process '{name}' is declared twice", where="Procfile")
        processes[name] = command
    return processes


def _procfile(tree: _Tree, s: _Settings, component_type: str) -> Plan:
    processes = parse_procfile(tree.read("Procfile"))
    if not processes:
        raise BuildFailure("the Procfile declares no processes (expected lines like 'web: <command>')",
                           where="Procfile")
    language = _language(tree, s, "a Procfile was found", tuple(processes.values()))
    first = next(iter(processes))
    if "web" in processes:
        run, reason = processes["web"], "A Procfile was found with a web process, which starts the app."
    elif component_type in SERVICE_TYPES:
        run = processes[first]
        reason = f"A Procfile was found without a web process, so its first process '{first}' starts the app."
    else:
        run = processes[first]
        reason = f"A Procfile was found, and its first process '{first}' runs the {component_type}."
    plan = Plan(strategy="procfile", reason=reason, language=language, run=run, processes=processes)
    if component_type in SERVICE_TYPES and "web" not in processes:
        plan.notes.append(f"the Procfile has no 'web' process; '{first}' is started instead")
    if s.run:
        plan.run = s.run
        plan.reason = "build.mode is procfile; the Procfile declares the processes and build.run starts the app."
    _install_dependencies(plan, tree)
    if s.command:
        plan.build_commands = [s.command]
    elif plan.language == "node":
        package = _package_json(tree)
        if package is not None and "build" in package.scripts:
            plan.build_commands = ["npm run build"]
    return plan


# --- c. Dockerfile ----------------------------------------------------------------------------------------------


def _dockerfile(tree: _Tree, s: _Settings) -> Detection:
    rel = _relative_path(s.dockerfile) if s.dockerfile else "Dockerfile"
    if not tree.is_file(rel):
        if s.dockerfile:
            raise BuildFailure(f"build.dockerfile is {rel} but there is no such file in {tree.shown}",
                               where="build.dockerfile")
        raise BuildFailure(f"build.mode is dockerfile but there is no Dockerfile in {tree.shown}", where="build.mode")
    if s.mode == "dockerfile":
        reason = f"build.mode is dockerfile, so the app is built as {rel} describes."
    elif s.dockerfile:
        reason = f"build.dockerfile names {rel}, so the app is built as that Dockerfile describes."
    else:
        reason = "A Dockerfile was found (and no Procfile), so the app is built as the Dockerfile describes."
    plan = Plan(strategy="dockerfile", reason=reason, language=s.language or _detect_language(tree) or "python")
    if s.command:
        plan.build_commands = [s.command]
    plan.run = s.run
    return Detection(plan, dockerfile=rel)


def _relative_path(value: str) -> str:
    path = PurePosixPath(value)
    if path.is_absolute() or ".." in path.parts or "\\" in value:
        raise BuildFailure(f"build.dockerfile must be a relative path inside the source (it is '{value}')",
                           where="build.dockerfile")
    return path.as_posix()


# --- d. Python --------------------------------------------------------------------------------------------------


@dataclass
class _PythonInfo:
    """What the Python declaration files say."""

    inputs: list[str] = field(default_factory=list)
    requirements: set[str] = field(default_factory=set)  # normalized distribution names
    requires_python: str | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class _Start:
    command: str
    why: str
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class _AppObject:
    """A module-level web application object found in a source file."""

    path: str  # file, relative to the source
    module: str  # dotted import path
    variable: str
    kind: Literal["wsgi", "asgi"]
    framework: str  # "Flask", "FastAPI", ... or "WSGI"/"ASGI" for wsgi.py/asgi.py entry points
    env: dict[str, str]
    main_reads_port: bool


def normalize_name(name: str) -> str:
    """PEP 503 normalization of a distribution name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(spec: str) -> tuple[str, set[str]] | None:
    """The normalized name and extras of a requirement specifier, or None for paths and URLs without a name."""
    spec = spec.strip()
    egg = _EGG.search(spec)
    if egg and re.match(r"^[a-z+]+://|^git\+", spec):
        return normalize_name(egg.group(1)), set()
    if re.match(r"^([a-z+]+://|[./~])", spec):
        return None
    match = _REQUIREMENT.match(spec)
    if match is None:
        return None
    extras = {normalize_name(x) for x in (match.group(2) or "[]")[1:-1].split(",") if x.strip()}
    return normalize_name(match.group(1)), extras


def _requirements_lines(tree: _Tree, rel: str, seen: set[str]) -> Iterator[str]:
    """Requirement specifiers of a requirements file, following ``-r`` includes inside the tree."""
    if rel in seen or len(seen) > 10:
        return
    seen.add(rel)
    text = re.sub(r"\\\r?\n", " ", tree.read(rel))
    base = PurePosixPath(rel).parent
    for raw in text.splitlines():
        line = re.sub(r"(^|\s)#.*$", "", raw).strip()
        if not line:
            continue
        option = re.match(r"^(-r|--requirement|-e|--editable)(?:\s+|=)(\S+)", line)
        if option and option.group(1) in ("-r", "--requirement"):
            include = (base / option.group(2)).as_posix()
            if ".." not in PurePosixPath(include).parts and tree.is_file(include):
                yield from _requirements_lines(tree, include, seen)
        elif option:
            yield option.group(2)
        elif not line.startswith("-"):
            yield line


def _add_requirement(info: _PythonInfo, spec: str) -> None:
    parsed = requirement_name(spec)
    if parsed is None:
        return
    name, extras = parsed
    info.requirements.add(name)
    if name == "fastapi" and "standard" in extras:
        info.requirements.add("uvicorn")  # fastapi[standard] brings uvicorn


def _python_info(tree: _Tree) -> _PythonInfo:
    info = _PythonInfo()
    if tree.is_file("requirements.txt"):
        info.inputs.append("requirements.txt")
        for spec in _requirements_lines(tree, "requirements.txt", set()):
            _add_requirement(info, spec)
    if tree.is_file("pyproject.toml"):
        _read_pyproject(tree, info)
    if tree.is_file("setup.py") and not info.inputs:
        info.notes.append("setup.py is not read; declare dependencies in requirements.txt or pyproject.toml")
    return info


def _read_pyproject(tree: _Tree, info: _PythonInfo) -> None:
    try:
        data = tomllib.loads(tree.read("pyproject.toml"))
    except tomllib.TOMLDecodeError as e:
        raise BuildFailure(f"pyproject.toml is not valid TOML: {e}", where="pyproject.toml") from e
    project = data.get("project")
    poetry = data.get("tool", {}).get("poetry") if isinstance(data.get("tool"), dict) else None
    if project is None:
        if isinstance(poetry, dict):
            info.inputs.append("pyproject.toml")
            info.notes.append("pyproject.toml uses Poetry: only a [project] table is read here, "
                              "[tool.poetry.dependencies] is not used to detect the start command")
        else:
            info.notes.append("pyproject.toml has no [project] table, so no dependencies are read from it")
        return
    if not isinstance(project, dict):
        raise BuildFailure("pyproject.toml: [project] must be a table", where="pyproject.toml")
    dependencies = project.get("dependencies", [])
    if not isinstance(dependencies, list) or not all(isinstance(d, str) for d in dependencies):
        raise BuildFailure("pyproject.toml: project.dependencies must be a list of requirement strings",
                           where="pyproject.toml")
    requires = project.get("requires-python")
    if requires is not None and not isinstance(requires, str):
        raise BuildFailure("pyproject.toml: project.requires-python must be a string", where="pyproject.toml")
    info.inputs.append("pyproject.toml")
    info.requires_python = requires
    for spec in dependencies:
        _add_requirement(info, spec)


def _python(tree: _Tree) -> Plan:
    info = _python_info(tree)
    start = _python_start(tree, info)
    if start is None:
        raise BuildFailure("cannot tell how to start this Python app; set build.run", where="build.run")
    declared = " and ".join(info.inputs) if info.inputs else "no dependency file"
    return Plan(strategy="python", reason=f"Python app ({declared}): {start.why}.", language="python",
                python_inputs=info.inputs, run=start.command, env=start.env, notes=info.notes)


def _python_start(tree: _Tree, info: _PythonInfo) -> _Start | None:
    """The usual way to serve this Python app, judged from its dependencies and source files."""
    django = _django_start(tree, info)
    if django is not None:
        return django
    app = _find_app_object(tree)
    deps = info.requirements
    if app is not None:
        target = f"{app.module}:{app.variable}"
        found = f"{app.path} defines the {app.framework} app '{app.variable}'"
        if app.kind == "asgi" and "uvicorn" in deps:
            return _Start(f"uvicorn {target} --host 0.0.0.0 --port $PORT", f"{found} and uvicorn is a dependency",
                          app.env)
        if app.kind == "wsgi" and "gunicorn" in deps:
            return _Start(f"gunicorn --bind 0.0.0.0:$PORT {target}", f"{found} and gunicorn is a dependency",
                          app.env)
        if app.main_reads_port and "/" not in app.path:
            return _Start(f"python {app.path}", f"{app.path} starts its {app.framework} app itself on $PORT")
        if app.framework == "Flask" and "flask" in deps:
            flask_app = app.module if app.variable in ("app", "application") else target
            return _Start(f"flask --app {flask_app} run --host 0.0.0.0 --port $PORT",
                          f"{found}, flask is a dependency and gunicorn is not", app.env)
    script = next((name for name in SCRIPT_STARTS if tree.is_file(name)), None)
    if script is None:
        return None
    return _Start(f"python {script}", f"{script} is the entry point")


def _django_start(tree: _Tree, info: _PythonInfo) -> _Start | None:
    if not tree.is_file("manage.py"):
        return None
    project = next((p for p in tree.top_dirs() if tree.is_file(f"{p}/wsgi.py")), None)
    if project is None:
        return None
    if "gunicorn" in info.requirements:
        return _Start(f"gunicorn --bind 0.0.0.0:$PORT {project}.wsgi",
                      f"manage.py and {project}/wsgi.py make it a Django project and gunicorn is a dependency")
    if "uvicorn" in info.requirements and tree.is_file(f"{project}/asgi.py"):
        return _Start(f"uvicorn {project}.asgi:application --host 0.0.0.0 --port $PORT",
                      f"manage.py and {project}/asgi.py make it a Django project and uvicorn is a dependency")
    return _Start("python manage.py runserver 0.0.0.0:$PORT",
                  "manage.py makes it a Django project without gunicorn, so Django's development server runs it")


def _candidate_modules(tree: _Tree) -> Iterator[tuple[str, str, dict[str, str]]]:
    """(file, module, env) of the files an app object usually lives in: top level, packages, src/ packages."""
    for stem in APP_MODULES:
        yield f"{stem}.py", stem, {}
    for package in tree.packages():
        for stem in APP_MODULES:
            yield f"{package}/{stem}.py", f"{package}.{stem}", {}
    for package in tree.packages("src"):
        dotted = package.removeprefix("src/")
        for stem in APP_MODULES:
            yield f"{package}/{stem}.py", f"{dotted}.{stem}", {"PYTHONPATH": "src"}


def _find_app_object(tree: _Tree) -> _AppObject | None:
    for path, module, env in _candidate_modules(tree):
        if not tree.is_file(path, strict=False):
            continue
        found = _app_object_in(tree.read(path), PurePosixPath(path).stem)
        if found is not None:
            variable, kind, framework, main_reads_port = found
            return _AppObject(path, module, variable, kind, framework, env, main_reads_port)
    return None


def _app_object_in(text: str, stem: str) -> tuple[str, Literal["wsgi", "asgi"], str, bool] | None:
    """(variable, kind, framework, __main__ block reads PORT) of the module-level app object in ``text``."""
    try:
        module = ast.parse(text)
    except (SyntaxError, ValueError):
        return None
    main_reads_port = any(_is_main_guard(node) and _PORT_ENV.search(ast.unparse(node)) for node in module.body)
    entry: tuple[str, Literal["wsgi", "asgi"], str, bool] | None = None
    for node in module.body:
        target, value = _assignment(node)
        if target is None:
            continue
        framework = _called_name(value)
        if framework in WSGI_FRAMEWORKS:
            return target, "wsgi", framework, main_reads_port
        if framework in ASGI_FRAMEWORKS:
            return target, "asgi", framework, main_reads_port
        if entry is None and stem in ("wsgi", "asgi") and target in ("application", "app"):
            entry = (target, "wsgi" if stem == "wsgi" else "asgi", stem.upper(), main_reads_port)
    return entry


def _assignment(node: ast.stmt) -> tuple[str | None, ast.expr | None]:
    if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
        return node.targets[0].id, node.value
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
        return node.target.id, node.value
    return None, None


def _called_name(value: ast.expr | None) -> str | None:
    if not isinstance(value, ast.Call):
        return None
    if isinstance(value.func, ast.Name):
        return value.func.id
    if isinstance(value.func, ast.Attribute):
        return value.func.attr
    return None


def _is_main_guard(node: ast.stmt) -> bool:
    return (isinstance(node, ast.If) and isinstance(node.test, ast.Compare)
            and isinstance(node.test.left, ast.Name) and node.test.left.id == "__name__"
            and any(isinstance(c, ast.Constant) and c.value == "__main__" for c in node.test.comparators))


# --- e. Node.js -------------------------------------------------------------------------------------------------


@dataclass
class _Package:
    scripts: dict[str, str]
    engines_node: str | None
    has_dependencies: bool


def _package_json(tree: _Tree) -> _Package | None:
    if not tree.is_file("package.json"):
        return None
    try:
        data = json.loads(tree.read("package.json"))
    except json.JSONDecodeError as e:
        raise BuildFailure(f"package.json is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}",
                           where="package.json") from e
    if not isinstance(data, dict):
        raise BuildFailure("package.json must hold a JSON object", where="package.json")
    scripts = data.get("scripts", {})
    if not isinstance(scripts, dict) or not all(isinstance(v, str) for v in scripts.values()):
        raise BuildFailure("package.json: scripts must map names to command lines", where="package.json")
    engines = data.get("engines")
    engines_node = engines.get("node") if isinstance(engines, dict) else None
    has_dependencies = any(data.get(key) for key in ("dependencies", "devDependencies", "optionalDependencies"))
    return _Package({k: v.strip() for k, v in scripts.items() if v.strip()},
                    engines_node if isinstance(engines_node, str) else None, has_dependencies)


def _node_start(tree: _Tree, package: _Package) -> tuple[str | None, str]:
    """The start command line (the script itself, so signals reach the process) and how it was found."""
    if "start" in package.scripts:
        return package.scripts["start"], "package.json's start script"
    if tree.is_file("server.js"):
        return "node server.js", "npm's default start for a server.js"
    return None, ""


def _node(tree: _Tree, component_type: str) -> Plan:
    package = _package_json(tree)
    assert package is not None  # _choose checked that package.json exists
    has_build = "build" in package.scripts
    run, why = _node_start(tree, package)
    if has_build and (component_type == "web-app" or run is None):
        why_static = "the component is a web app" if component_type == "web-app" else "no start script"
        plan = Plan(strategy="static", language="static", static_root=None, build_commands=["npm run build"],
                    reason=f"package.json has a build script and {why_static}, "
                           "so the site is built and served from build/ or dist/.")
    elif run is not None:
        plan = Plan(strategy="node", language="node", run=run, build_commands=["npm run build"] if has_build else [],
                    reason=f"Node.js app (package.json), started with {why}: {run}.")
    else:
        raise BuildFailure("package.json has neither a start script nor a build script, so there is nothing to "
                           "run; add one, or set build.run", where="package.json")
    _node_dependencies(plan, tree, package)
    return plan


def _node_dependencies(plan: Plan, tree: _Tree, package: _Package) -> None:
    if any(tree.is_file(lock) for lock in NODE_LOCKFILES):
        plan.node_install = "ci"
        return
    other = [lock for lock in OTHER_NODE_LOCKFILES if tree.is_file(lock)]
    if other:
        plan.notes.append(f"{other[0]} is ignored: dependencies are installed with npm (no package-lock.json)")
    plan.node_install = "install" if package.has_dependencies else None


# --- shared -----------------------------------------------------------------------------------------------------


def _install_dependencies(plan: Plan, tree: _Tree) -> None:
    """Declare the dependencies the files list, for the plan's language (Procfile and explicit strategies)."""
    if plan.language == "python":
        info = _python_info(tree)
        plan.python_inputs = info.inputs
        plan.notes.extend(info.notes)
    elif plan.language in ("node", "static"):
        package = _package_json(tree)
        if package is not None:
            _node_dependencies(plan, tree, package)
    elif plan.language == "go" and tree.is_file("go.mod"):
        golang.add_build(plan, tree, every_main=True)
    elif plan.language == "php":
        php.check_dependencies(tree)
    elif plan.language == "ruby":
        ruby.add_build(plan, tree)


def _static(tree: _Tree, component_type: str) -> Plan:
    if component_type in TASK_TYPES or component_type == "worker":
        raise BuildFailure(f"only index.html was found, and a {component_type} cannot be a static site; "
                           "set build.run and build.language", where="build.run")
    return Plan(strategy="static", reason="index.html was found at the top of the source, so it is served as a "
                "static site.", language="static", static_root="")


def _finish(plan: Plan, tree: _Tree, s: _Settings, endpoint_port: int | None) -> None:
    """What every strategy shares: test command, port, language version."""
    plan.test = s.test
    plan.port = endpoint_port if endpoint_port is not None else port_in_command(plan.run)
    plan.language_version = s.language_version or _language_version(tree, plan)


def port_in_command(command: str | None) -> int | None:
    """A literal port in a start command (``--bind 0.0.0.0:5000``, ``--port 8000``, ``-p 3000``), else None."""
    if not command:
        return None
    try:
        words = shlex.split(command)
    except ValueError:
        words = command.split()
    for i, word in enumerate(words):
        option, _, inline = word.partition("=")
        value = inline if inline else (words[i + 1] if i + 1 < len(words) else "")
        if option in ("--bind", "-b"):
            match = _BIND.match(value)
            value = match.group(1) if match else ""
        elif option not in ("--port", "-p"):
            continue
        if value.isdigit() and 0 < int(value) < 65536:
            return int(value)
    return None


def _language_version(tree: _Tree, plan: Plan) -> str | None:
    if plan.language == "java":
        asked = java.asked_version(tree)
        return asked[0] if asked else None
    if plan.language in ("go", "php", "ruby"):
        return plan.language_version  # set by the language's module (go.mod's go line, composer.json, ...)
    if plan.language == "python":
        return _python_version(tree)
    if plan.language == "node" or plan.node_install is not None or tree.is_file("package.json"):
        return _node_version(tree)
    return None


def _first_line(text: str | None) -> str | None:
    for line in (text or "").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            return line
    return None


def _python_version(tree: _Tree) -> str | None:
    version = _first_line(tree.read_optional(".python-version"))
    if version:
        return version
    runtime = _first_line(tree.read_optional("runtime.txt"))
    if runtime:
        return runtime.removeprefix("python-")
    if tree.is_file("pyproject.toml"):
        info = _PythonInfo()
        _read_pyproject(tree, info)
        return info.requires_python
    return None


def _node_version(tree: _Tree) -> str | None:
    for name in (".nvmrc", ".node-version"):
        version = _first_line(tree.read_optional(name))
        if version:
            return version.removeprefix("v")
    package = _package_json(tree)
    return package.engines_node if package else None
