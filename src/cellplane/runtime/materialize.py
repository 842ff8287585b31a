"""Language runtimes materialised from a lock, once per machine, from a shared cache.

A Python virtual environment or a Node.js ``node_modules`` tree is keyed by the digest of the lock
it was installed from (and the interpreter it runs on), so every build and every deploy of an
artifact whose dependencies did not change reuses the same tree: nothing is downloaded twice. The
package managers' own caches (uv's, pip's, npm's) live under the same cache directory, so even a
new lock only fetches the packages that changed.

A tree is complete once its marker file exists; creation happens under a file lock, so concurrent
builds and deploys of the same lock wait for one another instead of installing twice.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import stat
import subprocess
import sys
import sysconfig
import time
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cellplane.build.plan import BuildFailure

Log = Callable[[str], None]
COMPLETE = ".cellplane-complete"
READABLE = ".cellplane-readable"


def _discard(_: str) -> None:
    pass


@dataclass(frozen=True)
class DependencyCache:
    """The shared cache of dependencies: package managers' caches, resolved locks, and the trees installed from them
    (virtual environments, ``node_modules``), under one directory.

    ``installer`` chooses how Python packages are resolved and installed: ``auto`` (uv when it is
    installed, else pip), ``uv`` or ``pip``.
    """

    root: Path
    installer: str = "auto"

    def uv(self) -> str | None:
        return None if self.installer == "pip" else uv_binary()

    @property
    def uv_cache(self) -> Path:
        return self.root / "uv"

    @property
    def pip(self) -> Path:
        return self.root / "pip"

    @property
    def npm(self) -> Path:
        return self.root / "npm"

    @property
    def locks(self) -> Path:
        return self.root / "locks"

    def runtime(self, language: str, key: str) -> Path:
        return self.root / "runtimes" / language / key

    def env(self) -> dict[str, str]:
        """Environment for package managers: every cache under ``root``, no prompts, no telemetry."""
        return {
            "UV_CACHE_DIR": str(self.uv_cache), "PIP_CACHE_DIR": str(self.pip), "npm_config_cache": str(self.npm),
            "UV_NO_PROGRESS": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1",
            "npm_config_update_notifier": "false", "npm_config_fund": "false", "npm_config_audit": "false",
            "npm_config_loglevel": "warn", "UV_PYTHON_DOWNLOADS": "never",
        }


def base_python() -> str:
    """The interpreter applications run on: the one Cellplane runs on, outside any virtual environment."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    candidate = Path(sysconfig.get_config_var("BINDIR") or "") / f"python{version}"
    return str(candidate) if candidate.exists() else sys.executable


def python_tag() -> str:
    return f"py{sys.version_info.major}{sys.version_info.minor}"


def uv_binary() -> str | None:
    try:
        from uv import find_uv_bin

        return find_uv_bin()
    except (ImportError, FileNotFoundError):
        return shutil.which("uv")


def digest_of(*parts: bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.hexdigest()


def readable(tree: Path) -> Path:
    """Let every user read ``tree`` and run what its owner may run, once (marked by READABLE in it), when it is
    made or first used: workloads run as users of their own (``cellplane.dataplane.sandbox``) and see only
    their own trees, while the planes may create them, and the builds their files, under umask 077. Links are
    left alone. One pass over the tree; later calls cost one stat."""
    if (tree / READABLE).exists():
        return tree
    for root, dirs, files in os.walk(tree, topdown=False):
        for name in (*files, *dirs):
            _readable(os.path.join(root, name))
    _readable(str(tree))
    (tree / READABLE).touch()
    return tree


def _readable(path: str) -> None:
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        return
    mode = stat.S_IMODE(st.st_mode)
    wanted = mode | 0o044 | (0o011 if mode & 0o100 or stat.S_ISDIR(st.st_mode) else 0)
    if wanted != mode:
        os.chmod(path, wanted)


@contextmanager
def locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def run(args: list[str], *, cwd: Path, env: dict[str, str], log: Log, what: str, timeout: float | None = None) -> None:
    """Run a command, streaming its output line by line to ``log``; a failure names ``what`` and the last lines."""
    tail: list[str] = []
    try:
        proc = subprocess.Popen(args, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, text=True, errors="replace")
    except FileNotFoundError:
        raise BuildFailure(f"{what}: '{args[0]}' is not installed") from None
    assert proc.stdout is not None
    for line in proc.stdout:
        line = line.rstrip("\n")
        log(line)
        tail = [*tail[-9:], line]
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise BuildFailure(f"{what} did not finish within {timeout:.0f}s") from None
    if code != 0:
        last = next((ln for ln in reversed(tail) if ln.strip()), "")
        raise BuildFailure(f"{what} failed (exit {code})" + (f": {last.strip()}" if last else ""))


def base_env(cache: DependencyCache) -> dict[str, str]:
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SSL_CERT_FILE", "SSL_CERT_DIR", "PIP_INDEX_URL",
            "UV_INDEX_URL", "PIP_EXTRA_INDEX_URL", "npm_config_registry", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    env.setdefault("HOME", str(cache.root))
    env.update(cache.env())
    return env


# --- Python ---------------------------------------------------------------------------------------------------


def python_venv(lock: Path, cache: DependencyCache, log: Log = _discard) -> Path:
    """A virtual environment with exactly the packages pinned in ``lock``; created once per lock digest."""
    key = f"{python_tag()}-{digest_of(lock.read_bytes())[:32]}"
    target = cache.runtime("python", key)
    if (target / COMPLETE).exists():
        log(f"using the cached Python environment {key}")
        return readable(target)
    with locked(target):
        if (target / COMPLETE).exists():
            return target
        shutil.rmtree(target, ignore_errors=True)  # an interrupted earlier attempt
        env = base_env(cache)
        uv = cache.uv()
        log(f"creating the Python environment {key}" + ("" if uv else " (pip)"))
        if uv:
            run([uv, "venv", "--quiet", "--python", base_python(), str(target)], cwd=cache.root, env=env, log=log,
                what="creating the virtual environment")
            run([uv, "pip", "sync", "--python", str(target / "bin" / "python"), str(lock)], cwd=cache.root, env=env,
                log=log, what="installing the Python dependencies")
        else:
            run([base_python(), "-m", "venv", str(target)], cwd=cache.root, env=env, log=log,
                what="creating the virtual environment")
            run([str(target / "bin" / "python"), "-m", "pip", "install", "--no-deps", "-r", str(lock)],
                cwd=cache.root, env=env, log=log, what="installing the Python dependencies")
        (target / COMPLETE).write_text(lock.read_text())
        readable(target)
    return target


def python_lock(inputs: list[Path], packages: list[str], cwd: Path, cache: DependencyCache, log: Log = _discard,
                max_age: float = 24 * 3600) -> str:
    """Resolve requirement files / pyproject.toml files and extra specifiers to exact pins (a requirements lock).

    The same inputs resolve to the same lock for ``max_age`` seconds without asking the package index again;
    that is what makes a rebuild with unchanged dependencies take seconds.
    """
    contents = [p.name.encode() + b"\0" + p.read_bytes() for p in inputs]
    key = digest_of(python_tag().encode(), *contents, "\n".join(sorted(packages)).encode())
    cached = cache.locks / f"python-{key[:40]}.txt"
    if cached.exists() and time.time() - cached.stat().st_mtime < max_age:
        log("dependencies unchanged since an earlier build: reusing its lock")
        return cached.read_text()
    env = base_env(cache)
    extra = cwd / ".cellplane-extra-requirements.in"
    sources = [str(p) for p in inputs]
    if packages:
        extra.write_text("\n".join(packages) + "\n")
        sources.append(str(extra))
    try:
        if not sources:
            return ""
        uv = cache.uv()
        out = cwd / ".cellplane-lock.txt"
        if uv:
            run([uv, "pip", "compile", "--quiet", "--no-header", "--no-annotate", "--python", base_python(),
                 "-o", str(out), *sources], cwd=cwd, env=env, log=log, what="resolving the Python dependencies")
        else:
            venv = cwd / ".cellplane-resolve-venv"
            run([base_python(), "-m", "venv", str(venv)], cwd=cwd, env=env, log=log, what="creating a resolver venv")
            reqs: list[str] = []
            for n, p in enumerate(inputs):
                if p.suffix == ".toml":  # its [project] dependencies, not the project itself
                    listed = cwd / f".cellplane-pyproject-{n}.in"
                    listed.write_text("\n".join(pyproject_dependencies(p)) + "\n")
                    p = listed
                reqs += ["-r", str(p)]
            run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", *reqs,
                 *(["-r", str(extra)] if packages else [])],
                cwd=cwd, env=env, log=log, what="installing the Python dependencies")
            frozen = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "freeze", "--exclude-editable"],
                                    capture_output=True, text=True, env=env, check=True).stdout
            out.write_text(frozen)
            shutil.rmtree(venv, ignore_errors=True)
        text = out.read_text()
        out.unlink()
    finally:
        extra.unlink(missing_ok=True)
    cache.locks.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.replace(cached)
    return text


def pyproject_dependencies(path: Path) -> list[str]:
    """The ``[project] dependencies`` of a pyproject.toml."""
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise BuildFailure(f"{path.name}: {e}", path.name) from None
    deps = (data.get("project") or {}).get("dependencies") or []
    return [d for d in deps if isinstance(d, str)]


# --- Node.js --------------------------------------------------------------------------------------------------


def npm_install(cwd: Path, kind: str, cache: DependencyCache, log: Log = _discard, production: bool = False) -> None:
    """``npm ci`` (a lockfile exists) or ``npm install`` (npm writes one) in ``cwd``, from the shared npm cache."""
    npm = shutil.which("npm")
    if not npm:
        raise BuildFailure("Node.js dependencies: npm is not installed on this machine")
    args = [npm, "ci" if kind == "ci" else "install", "--prefer-offline", "--no-audit", "--no-fund"]
    if production:
        args.append("--omit=dev")
    log("$ npm " + " ".join(args[1:]))
    run(args, cwd=cwd, env=base_env(cache), log=log, what=f"npm {'ci' if kind == 'ci' else 'install'}")


def node_modules(package_json: Path, lock: Path, cache: DependencyCache, log: Log = _discard) -> Path:
    """A production ``node_modules`` for this package.json + lockfile pair, created once per digest."""
    key = digest_of(package_json.read_bytes(), lock.read_bytes())[:32]
    target = cache.runtime("node", key)
    if (target / COMPLETE).exists():
        log(f"using the cached node_modules {key}")
        return readable(target) / "node_modules"
    with locked(target):
        if not (target / COMPLETE).exists():
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir(parents=True)
            shutil.copyfile(package_json, target / "package.json")
            shutil.copyfile(lock, target / "package-lock.json")
            log(f"installing node_modules {key}")
            npm_install(target, "ci", cache, log, production=True)
            (target / "node_modules").mkdir(exist_ok=True)
            (target / COMPLETE).touch()
            readable(target)
    return target / "node_modules"
