"""The programs benchmarks need besides Python (wrk, nginx): found on PATH, or installed from Debian's packages."""

from __future__ import annotations

import os
import shutil
import subprocess

PACKAGES = {"wrk": "wrk", "nginx": "nginx-light"}
SBIN = ("/usr/sbin", "/sbin")


def need(program: str) -> str:
    """The path of ``program``; installs its Debian package first when it is missing (root: apt-get)."""
    found = shutil.which(program) or next((f"{d}/{program}" for d in SBIN if os.access(f"{d}/{program}", os.X_OK)),
                                          None)
    if found:
        return found
    package = PACKAGES[program]
    apt = ["apt-get", "install", "-y", "-q", "--no-install-recommends", package]
    if os.geteuid() != 0:
        apt = ["sudo", "-n", *apt]
    print(f"bench: installing {package} ({' '.join(apt)})", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    result = subprocess.run(apt, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        update = [*apt[:apt.index("apt-get") + 1], "update", "-q"]
        subprocess.run(update, env=env, capture_output=True)  # the package lists may be stale: update, try again
        result = subprocess.run(apt, env=env, capture_output=True, text=True)
    found = shutil.which(program) or next((f"{d}/{program}" for d in SBIN if os.access(f"{d}/{program}", os.X_OK)),
                                          None)
    if not found:
        raise SystemExit(f"bench: {program} is missing and installing {package} failed:\n{result.stderr[-2000:]}")
    return found
