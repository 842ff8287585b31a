"""Go: a module (``go.mod``) built by the machine's ``go`` into a static binary, which is the start command.

Detection reads ``go.mod`` (module path, the ``go`` and ``toolchain`` lines) and finds the main
package: the module root's, else a single ``cmd/<name>`` (a Procfile builds every one, as Heroku's Go
buildpack does). The binary is written to ``bin/<name>`` in the work tree, where a Procfile expects
it. ``CGO_ENABLED=0`` unless a ``.go`` file imports "C"; ``-trimpath`` and no VCS stamp, so the same
source gives the same bytes; ``-ldflags="-s -w"`` leaves out the symbol table and DWARF (panics still name
file and line), which makes the link, the one step a warm rebuild always runs, about 1 s shorter for a
small service (0.6 s instead of 1.6 s here) and the binary a third smaller.

Caches: the module cache (``GOMODCACHE``) and the build cache (``GOCACHE``) live under the build
cache directory and are shared by every build. A module graph (``go.mod`` + ``go.sum``) downloaded
once is marked by its digest; a later build of the same graph runs with ``GOPROXY=off`` and fetches
nothing. The machine's Go is used (``GOTOOLCHAIN=local``): the version asked for is recorded, and a
``go`` line newer than the machine's fails with one line. Cost of a warm rebuild: one ``go build``
whose packages are all in GOCACHE (under a second for a small service) and one ``go version -m``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Protocol

from cellplane.build.plan import BuildFailure, Plan
from cellplane.runtime.materialize import Log, digest_of, run

GO_FALLBACK = "/usr/local/go/bin/go"  # where the official tarball installs it, often not on a service's PATH
MAX_SCANNED_FILES = 2000
PASSED = ("GOPROXY", "GONOPROXY", "GOPRIVATE", "GONOSUMDB", "GOSUMDB", "GOINSECURE", "GOAUTH")
_MODULE = re.compile(r"^module\s+(\S+)", re.M)
_GO_LINE = re.compile(r"^go\s+(\d+(?:\.\d+){0,2}\S*)", re.M)
_TOOLCHAIN = re.compile(r"^toolchain\s+go(\S+)", re.M)
_REQUIRE = re.compile(r"^require\s+(\(|\S+\s+\S+)", re.M)
_PACKAGE_MAIN = re.compile(r"^package\s+main\b", re.M)
_IMPORT_C = re.compile(r'^import\s+(?:\(\s*)?"C"', re.M)
_SKIP_DIRS = {"vendor", "testdata", "node_modules", ".git"}


class Files(Protocol):
    """What detection may read of the source tree (``detect._Tree``)."""

    root: Path

    def is_file(self, rel: str, strict: bool = True) -> bool: ...

    def is_dir(self, rel: str, strict: bool = True) -> bool: ...

    def read(self, rel: str) -> str: ...


@dataclass
class GoModule:
    path: str
    go: str | None = None  # the go line: the language version the module asks for
    toolchain: str | None = None  # the toolchain line, without "go"
    requires: bool = False
    mains: list[str] = field(default_factory=list)  # main packages: "." and/or "cmd/<name>"

    @property
    def version(self) -> str | None:
        """What the source asks for, as recorded: "1.22" or "1.22 (toolchain 1.22.3)"."""
        if self.go and self.toolchain:
            return f"{self.go} (toolchain {self.toolchain})"
        return self.go or self.toolchain


def read_module(files: Files) -> GoModule:
    text = files.read("go.mod")
    module = _MODULE.search(text)
    if module is None:
        raise BuildFailure("go.mod has no 'module' line; start it with 'module <path>' (go mod init does)",
                           where="go.mod")
    go, toolchain = _GO_LINE.search(text), _TOOLCHAIN.search(text)
    found = GoModule(module.group(1).strip('"'), go.group(1) if go else None,
                     toolchain.group(1) if toolchain else None, bool(_REQUIRE.search(text)))
    found.mains = main_packages(files)
    return found


def _go_files(files: Files, rel: str) -> list[Path]:
    directory = files.root / rel
    if not files.is_dir(rel or ".", strict=False):
        return []
    return sorted(p for p in directory.iterdir() if p.suffix == ".go" and not p.name.endswith("_test.go")
                  and files.is_file(p.relative_to(files.root).as_posix(), strict=False))


def _is_main(files: Files, rel: str) -> bool:
    return any(_PACKAGE_MAIN.search(_text(p)) for p in _go_files(files, rel))


def _text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")[:200_000]
    except OSError:
        return ""


def main_packages(files: Files) -> list[str]:
    """The main packages a build may mean: the module root's, and each ``cmd/<name>`` one."""
    mains = ["."] if _is_main(files, "") else []
    if files.is_dir("cmd", strict=False):
        for child in sorted((files.root / "cmd").iterdir()):
            rel = f"cmd/{child.name}"
            if not child.name.startswith((".", "_")) and _is_main(files, rel):
                mains.append(rel)
    return mains


def needs_cgo(files: Files) -> str | None:
    """The first ``.go`` file (relative path) that imports "C", or None; vendor/ and testdata/ are not read."""
    seen = 0
    stack = [files.root]
    while stack:
        directory = stack.pop()
        for child in sorted(directory.iterdir()):
            if child.is_symlink():
                continue
            if child.is_dir():
                if child.name not in _SKIP_DIRS and not child.name.startswith("."):
                    stack.append(child)
            elif child.suffix == ".go" and not child.name.endswith("_test.go"):
                seen += 1
                if _IMPORT_C.search(_text(child)):
                    return child.relative_to(files.root).as_posix()
                if seen >= MAX_SCANNED_FILES:
                    return None
    return None


def binary_name(module: GoModule, main: str) -> str:
    """``bin/<name>``: the last element of the main package's import path ("v2"-style suffixes skipped)."""
    if main != ".":
        return PurePosixPath(main).name
    parts = [p for p in module.path.split("/") if p]
    while len(parts) > 1 and re.fullmatch(r"v\d+", parts[-1]):
        parts.pop()
    name = re.sub(r"[^A-Za-z0-9._-]", "-", parts[-1] if parts else "app")
    return name or "app"


def build_command(module: GoModule, main: str, cgo: bool) -> str:
    target = "." if main == "." else f"./{main}"
    flags = '-trimpath -ldflags="-s -w"'
    return f"CGO_ENABLED={1 if cgo else 0} go build {flags} -o bin/{binary_name(module, main)} {target}"


def _binary_clash(files: Files, module: GoModule, mains: list[str]) -> None:
    for main in mains:
        rel = f"bin/{binary_name(module, main)}"
        if files.is_dir(rel, strict=False):
            raise BuildFailure(f"{rel} is a directory, but the Go binary of {main} is written there; rename it",
                               where=rel)


def add_build(plan: Plan, files: Files, every_main: bool) -> GoModule:
    """Add the ``go build`` commands of the module to ``plan`` (every main package, or the one to start)."""
    module = read_module(files)
    mains = module.mains if every_main else [single_main(module)]
    if not mains:
        plan.notes.append("go.mod was found, but no main package (package main at the top or in cmd/<name>): "
                          "nothing is compiled")
        return module
    _binary_clash(files, module, mains)
    cgo_file = needs_cgo(files)
    if cgo_file:
        plan.notes.append(f"{cgo_file} imports \"C\", so the binary is built with cgo (CGO_ENABLED=1)")
    plan.build_commands = [build_command(module, main, cgo_file is not None) for main in mains]
    plan.language_version = plan.language_version or module.version
    return module


def single_main(module: GoModule) -> str:
    if "." in module.mains:
        return "."
    if len(module.mains) == 1:
        return module.mains[0]
    if not module.mains:
        raise BuildFailure("go.mod was found, but no main package: put 'package main' with a main function at "
                           "the module's top directory or in cmd/<name>/", where="go.mod")
    listed = ", ".join(module.mains)
    raise BuildFailure(f"cannot tell which Go program to build: {listed} are all main packages; add a Procfile "
                       f"naming the one to start (web: bin/{PurePosixPath(module.mains[0]).name}): with a "
                       "Procfile every one is built into bin/", where="go.mod")


def plan(files: Files) -> Plan:
    """The "go" strategy: build the module's main package, start its binary."""
    result = Plan(strategy="go", reason="", language="go")
    module = add_build(result, files, every_main=False)
    main = single_main(module)
    binary = f"bin/{binary_name(module, main)}"
    where = "at the module's top" if main == "." else f"in {main}"
    result.run = binary
    result.reason = (f"Go module {module.path} (go.mod): its main package {where} is built with go build, "
                     f"and the binary {binary} starts it.")
    return result


# --- the build machine's side ------------------------------------------------------------------------------------


def go_binary(path: str | None) -> str | None:
    found = shutil.which("go", path=path)
    if found:
        return found
    return GO_FALLBACK if Path(GO_FALLBACK).is_file() else None


def require_go(path: str | None) -> str:
    go = go_binary(path)
    if go is None:
        raise BuildFailure("go.mod was found, but Go is not installed on the build machine; install Go "
                           "(make buildtools does) or build the component elsewhere", where="go.mod")
    return go


def build_env(cache_root: Path) -> dict[str, str]:
    """The environment every Go command of a build runs with: caches under ``cache_root``, the local toolchain,
    and the machine's proxy and checksum settings (``GOPROXY``, ``GOPRIVATE``, ...) as its environment has them."""
    env = {k: os.environ[k] for k in PASSED if k in os.environ}
    env.update({"GOMODCACHE": str(cache_root / "go" / "mod"), "GOCACHE": str(cache_root / "go" / "build"),
                "GOPATH": str(cache_root / "go" / "path"), "GOTOOLCHAIN": "local", "GOFLAGS": "-buildvcs=false",
                "GOTELEMETRY": "off", "GOENV": "off"})
    return env


def download(go: str, work: Path, env: dict[str, str], cache_root: Path, log: Log) -> dict[str, str]:
    """Fetch the module graph of ``work/go.mod`` into the shared module cache, once per graph; returns the
    environment the build then runs with (``GOPROXY=off`` when this graph was fetched by an earlier build)."""
    mod, sums = work / "go.mod", work / "go.sum"
    workspace = workspace_env(work)
    env = {**env, **workspace}
    if (work / "vendor" / "modules.txt").is_file():
        log("vendor/modules.txt is present: the build uses vendor/ and downloads nothing")
        return workspace
    text = mod.read_text(errors="replace")
    if not _REQUIRE.search(text):
        log("go.mod requires no modules: nothing to download")
        return workspace
    if not sums.is_file():
        log("note: go.mod requires modules but there is no go.sum: they are resolved during the build "
            "(-mod=mod); commit go.sum for reproducible builds")
        return {**workspace, "GOFLAGS": env.get("GOFLAGS", "") + " -mod=mod"}
    key = digest_of(mod.read_bytes(), sums.read_bytes())[:40]
    marker = cache_root / "go" / "graphs" / key
    if marker.exists():
        log(f"module graph unchanged since an earlier build (go.mod + go.sum {key[:12]}): the module cache holds "
            "it, so the build runs with GOPROXY=off")
        return {**workspace, "GOPROXY": "off"}
    log("$ go mod download")
    run([go, "mod", "download"], cwd=work, env=env, log=log, what="go mod download")
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.touch()
    return workspace


def workspace_env(work: Path) -> dict[str, str]:
    """The source's own go.work when it has one; otherwise none, so that a go.work in a directory above the
    build's (go looks upwards) is never used."""
    return {"GOWORK": str(work / "go.work")} if (work / "go.work").is_file() else {"GOWORK": "off"}


def machine_version(go: str, env: dict[str, str]) -> str:
    """``go1.26.8``: the version of the machine's Go."""
    out = subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True, env=env, check=False)
    return out.stdout.strip() or "go (unknown version)"


def _numbers(version: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", version.split("rc")[0].split("beta")[0])[:3])


def asked_version(work: Path) -> str | None:
    """go.mod's go line in ``work`` (what the build must at least be), or None."""
    try:
        found = _GO_LINE.search((work / "go.mod").read_text(errors="replace"))
    except OSError:
        return None
    return found.group(1) if found else None


def check_version(asked: str | None, machine: str) -> None:
    """A go line newer than the machine's Go fails here, with one line, instead of in go build."""
    if asked and _numbers(asked) > _numbers(machine.removeprefix("go")):
        raise BuildFailure(f"go.mod asks for go {asked}, newer than the build machine's {machine}; lower the go "
                           "line in go.mod or install a newer Go on the build machine", where="go.mod")


def main_module(go: str, binary: Path, env: dict[str, str]) -> str | None:
    """The path of the module a binary's main package is in (``go version -m``'s ``mod`` line), or None."""
    out = subprocess.run([go, "version", "-m", str(binary)], capture_output=True, text=True, env=env, check=False)
    for line in out.stdout.splitlines():
        parts = line.strip().split("\t")
        if len(parts) >= 2 and parts[0] == "mod":
            return parts[1]
    return None


def module_sums(tree: Path, module: str) -> Path | None:
    """The go.sum beside the go.mod in ``tree`` that declares ``module`` (module caches and vendor/ left out)."""
    for directory, subdirs, names in os.walk(tree):
        cache = Path(directory).name == "go"  # a golang stage's GOPATH: /go/pkg/mod is a module cache
        skipped = {".git", "node_modules", "vendor", *(("pkg",) if cache else ())}
        subdirs[:] = sorted(d for d in subdirs if d not in skipped)
        if "go.mod" in names and "go.sum" in names:
            found = _MODULE.search((Path(directory) / "go.mod").read_text(errors="replace"))
            if found and found.group(1) == module:
                return Path(directory) / "go.sum"
    return None


def pins(go: str, binaries: list[Path], env: dict[str, str]) -> list[tuple[str, str]]:
    """(module, version) of every module compiled into the binaries, as ``go version -m`` reads them back."""
    found: set[tuple[str, str]] = set()
    for binary in binaries:
        out = subprocess.run([go, "version", "-m", str(binary)], capture_output=True, text=True, env=env,
                             check=False)
        for line in out.stdout.splitlines():
            parts = line.strip().split("\t")
            if len(parts) >= 3 and parts[0] in ("dep", "=>"):
                found.add((parts[1], parts[2]))
    return sorted(found)
