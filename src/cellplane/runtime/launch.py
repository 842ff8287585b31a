"""How an artifact starts: the command, working directory and environment of one process.

The runtime (a virtual environment, a ``node_modules`` tree) comes from the shared cache, keyed by the
artifact's lock, so starting the same artifact again — or another artifact with the same dependencies —
installs nothing. ``PORT`` is always set; so are the framework variables that choose a port
(``FLASK_RUN_PORT``, ...). An application whose start command names its declared port literally
(``gunicorn --bind 0.0.0.0:5000``) runs on that port, which must then be free.
"""

from __future__ import annotations

import json
import os
import re
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cellplane.build.plan import BuildFailure
from cellplane.runtime.materialize import DependencyCache, base_env, base_python, node_modules, python_venv

MANIFEST = "manifest.json"


@dataclass
class Launch:
    argv: list[str]
    cwd: Path
    env: dict[str, str]
    port: int


def read_manifest(tree: Path) -> dict[str, Any]:
    try:
        return json.loads((tree / MANIFEST).read_text())
    except (OSError, ValueError) as e:
        raise BuildFailure(f"the artifact has no readable {MANIFEST}: {e}") from None


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_is_free(port: int, host: str = "0.0.0.0") -> bool:  # noqa: S104  (the app binds all interfaces)
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def literal_port(command: str | None, declared: int | None) -> bool:
    """Whether the start command binds the declared port itself (``:5000``, ``--port 5000``, ``-p 5000``)."""
    if not command or not declared:
        return False
    return bool(re.search(rf"(?<![\w$]){declared}(?!\d)", command))


def launch_command(tree: Path, cache: DependencyCache, *, port: int | None = None, host: str = "127.0.0.1",
                   process: str = "web", log: Callable[[str], None] = lambda _: None) -> Launch:
    manifest = read_manifest(tree)
    workdir = tree / manifest.get("workdir", "files")
    run = (manifest.get("processes") or {}).get(process) or manifest.get("run")
    declared = manifest.get("port")
    if declared and literal_port(run, declared):
        if port and port != declared:
            log(f"note: the start command binds port {declared} itself; --port {port} is ignored")
        port = declared
        if not port_is_free(port):
            raise BuildFailure(f"the application binds its declared port {port} itself, and that port is in use")
    port = port or free_port(host)
    env = base_env(cache)
    env.update({str(k): str(v) for k, v in (manifest.get("env") or {}).items()})
    env.update({"PORT": str(port), "HOST": host, "FLASK_RUN_PORT": str(port), "FLASK_RUN_HOST": host,
                "UVICORN_PORT": str(port), "UVICORN_HOST": host, "GUNICORN_CMD_ARGS": env.get("GUNICORN_CMD_ARGS")
                or f"--bind {host}:{port}", "PYTHONUNBUFFERED": "1"})
    if manifest.get("language") == "static" or manifest.get("static"):
        root = tree / ((manifest.get("static") or {}).get("root") or "files")
        argv = [sys.executable, "-m", "cellplane.runtime.static", "--root", str(root), "--port", str(port),
                "--host", host]
        if (manifest.get("static") or {}).get("spa") is False:
            argv.append("--no-spa")
        return Launch(argv, root, env, port)
    if not run:
        raise BuildFailure(f"the artifact has no start command for process '{process}'")
    path = [str(workdir / "node_modules" / ".bin")]
    lock = (manifest.get("lock") or {})
    if lock.get("python"):
        venv = python_venv(tree / lock["python"], cache, log)
        path.insert(0, str(venv / "bin"))
        env["VIRTUAL_ENV"] = str(venv)
    elif manifest.get("language") == "python":  # no dependencies: `python` is the interpreter venvs are made from
        path.insert(0, str(Path(base_python()).parent))
    if manifest.get("language") == "python":
        env["PYTHONPATH"] = os.pathsep.join(str(p) for p in (workdir / "src", workdir) if p.is_dir())
    if lock.get("node"):
        modules = node_modules(workdir / "package.json", tree / lock["node"], cache, log)
        link = workdir / "node_modules"
        if not link.exists():
            link.symlink_to(modules, target_is_directory=True)
        env.setdefault("NODE_ENV", "production")
    env["PATH"] = os.pathsep.join([*path, env["PATH"]])
    return Launch(["/bin/sh", "-c", run], workdir, env, port)
