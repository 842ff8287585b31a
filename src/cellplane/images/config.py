"""The OCI image configuration of a built component: the base image's, plus our layer and how to start.

Written as canonical JSON (sorted keys, no spaces) with no creation time, so that the same base, the same
layer and the same settings give the same bytes and the same config digest. ``Env`` starts from the base's
(its ``PATH``) with the artifact's environment and ``PORT`` over it; ``Cmd`` runs the artifact's start command
(through ``/bin/sh -c`` when it needs a shell: variables, pipes, ``&&``; split into words otherwise, so a
static binary runs on a base without a shell); ``Entrypoint`` is cleared so the base's does not wrap it;
``User`` is a numeric non-root id; ``Labels`` name the component, the commit and the artifact digest.
"""

from __future__ import annotations

import json
import shlex
from typing import Any

MEDIA_TYPE = "application/vnd.oci.image.config.v1+json"
DEFAULT_USER = "10014"  # Choreo's non-root uid: images made for Choreo expect it
LABEL_COMPONENT = "dev.cellplane.component"
LABEL_COMMIT = "dev.cellplane.commit"
LABEL_ARTIFACT = "dev.cellplane.artifact"
_SHELL = set("$|&;<>()`*?[]{}~\\\"'\n")


def canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def command(run: str) -> list[str]:
    """The image's ``Cmd`` for a start command line."""
    if any(c in _SHELL for c in run):
        return ["/bin/sh", "-c", run]
    words = shlex.split(run)
    return words or ["/bin/sh", "-c", run]


def image_config(base: dict[str, Any], diff_id: str, *, run: str | None, env: dict[str, str], workdir: str,
                 port: int | None, labels: dict[str, str], user: str = DEFAULT_USER,
                 dependencies: tuple[tuple[str, str], ...] = (), cmd: list[str] | None = None,
                 stop_signal: str | None = None) -> bytes:
    """The config of ``base`` (a parsed OCI or Docker image config) with one more layer, ``diff_id``, after the
    ``dependencies`` layers (``(diff_id, what it holds)`` each: ``images.dependencies``). ``cmd`` is the ``Cmd``
    as it is (a static site's nginx), instead of one made from ``run``."""
    inherited = dict(base.get("config") or {})
    merged: dict[str, str] = {}
    for item in inherited.get("Env") or []:
        key, _, value = str(item).partition("=")
        merged[key] = value
    merged.update(env)
    if port is not None:
        merged["PORT"] = str(port)
    settings: dict[str, Any] = {"Env": [f"{k}={v}" for k, v in sorted(merged.items())], "WorkingDir": workdir,
                                "User": user, "Labels": {**(inherited.get("Labels") or {}), **labels}}
    if cmd:
        settings["Cmd"] = list(cmd)
    elif run:
        settings["Cmd"] = command(run)
    if stop_signal:
        settings["StopSignal"] = stop_signal
    if port is not None:
        settings["ExposedPorts"] = {f"{port}/tcp": {}}
    rootfs = dict(base.get("rootfs") or {"type": "layers", "diff_ids": []})
    history = [*(base.get("history") or []), *({"created_by": f"cellplane: {what}"} for _, what in dependencies),
               {"created_by": "cellplane: the build artifact" + (" (a static site for nginx)" if cmd else " at /app"),
                                               "comment": labels.get(LABEL_ARTIFACT, "")}]
    return canonical({
        "architecture": base.get("architecture") or "amd64", "os": base.get("os") or "linux",
        "config": settings,
        "rootfs": {"type": "layers", "diff_ids": [*(rootfs.get("diff_ids") or []),
                                                      *(d for d, _ in dependencies), diff_id]},
        "history": history,
    })
