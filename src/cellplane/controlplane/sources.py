"""Reading a component's source on the control plane: a local directory, or a git repository."""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cellplane.errors import FieldProblem, InvalidError
from cellplane.sourcetree import is_git_url

GIT_TIMEOUT = 120


@contextmanager
def checkout(repository: str, branch: str | None = None, ref: str | None = None) -> Iterator[Path]:
    """A temporary checkout of ``repository`` (a git URL, or a local path to a directory or git repository)."""
    for field, value in (("source.repository", repository), ("source.branch", branch), ("source.ref", ref)):
        if value and value.startswith("-"):  # git would read it as an option
            raise InvalidError(f"'{value}' cannot start with '-'", [FieldProblem(field, "cannot start with '-'")])
    if not is_git_url(repository):
        try:  # '~nosuchuser' or an over-long name raise instead of answering False
            local = Path(repository).expanduser()
            is_dir, is_repo = local.is_dir(), (local / ".git").exists()
        except (OSError, RuntimeError, ValueError):
            is_dir = is_repo = False
        if not is_dir:
            raise InvalidError(f"source '{repository}' is neither a directory nor a git URL",
                               [FieldProblem("source.repository", "no such directory on the control plane")])
        if not is_repo or (not branch and not ref):
            yield local
            return
    with tempfile.TemporaryDirectory(prefix="cellplane-src-") as tmp:
        dest = Path(tmp) / "src"
        env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true"}
        args = ["git", "clone", "--quiet", "--no-tags"]
        if not ref:
            args += ["--depth", "1"] + (["--branch", branch] if branch else [])
        _git([*args, "--", repository, str(dest)], env)
        if ref:
            _git(["git", "-C", str(dest), "checkout", "--quiet", "--detach", ref], env, "source.ref")
        yield dest


def _git(args: list[str], env: dict[str, str], field: str = "source.repository") -> None:
    try:
        proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=GIT_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        raise InvalidError(f"git did not finish within {GIT_TIMEOUT}s", [FieldProblem(field, "timed out")]) from None
    except FileNotFoundError:
        raise InvalidError("git is not installed on the control plane", [FieldProblem(field, "git missing")]) from None
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        reason = lines[-1] if lines else f"git exited with {proc.returncode}"
        raise InvalidError(f"cannot read the source: {reason}", [FieldProblem(field, reason)])

