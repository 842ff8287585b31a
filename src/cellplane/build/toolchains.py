"""The machine's compilers and build tools, standing in for a build stage's base image.

A Dockerfile's ``FROM golang:1.22 AS build`` stage runs its ``go build`` on this machine's Go, its
``mvn package`` on this machine's Maven, and so on. :func:`find` locates a tool (on ``PATH``, else
where its installers put it, e.g. ``/usr/local/go/bin``); :func:`build_env` is the environment
those tools run with: every module or dependency cache under the build cache directory, shared by
all builds (Go's module and build caches, Maven's local repository, Gradle's home), so a warm
rebuild downloads nothing, and Go never downloads another toolchain (``GOTOOLCHAIN=local``).
A lookup is a few ``stat`` calls.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

__all__ = ["TOOLS", "build_env", "find"]

# tool -> (what to call it in messages, where installers put it besides PATH)
TOOLS: dict[str, tuple[str, tuple[str, ...]]] = {
    "go": ("Go", ("/usr/local/go/bin/go", "/usr/lib/go/bin/go")),
    "mvn": ("Maven", ("/usr/share/maven/bin/mvn", "/opt/maven/bin/mvn")),
    "gradle": ("Gradle", ("/opt/gradle/bin/gradle", "/usr/share/gradle/bin/gradle")),
    "java": ("a Java runtime", ("/usr/lib/jvm/default-java/bin/java",)),
    "javac": ("a JDK", ("/usr/lib/jvm/default-java/bin/javac",)),
    "jar": ("a JDK", ("/usr/lib/jvm/default-java/bin/jar",)),
    "node": ("Node.js", ()),
    "npm": ("npm", ()),
}


def find(tool: str) -> str | None:
    """The path of ``tool`` on this machine, or None."""
    found = shutil.which(tool)
    if found:
        return found
    for candidate in TOOLS.get(tool, ("", ()))[1]:
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def describe(tool: str) -> str:
    """``"Go"``: how messages name a tool."""
    return TOOLS.get(tool, (tool, ()))[0]


def build_env(cache_root: Path, path: str) -> dict[str, str]:
    """Environment for a build stage's commands: the shared caches, and ``path`` after the tools' directories."""
    dirs: list[str] = []
    for tool in TOOLS:
        found = find(tool)
        if found and shutil.which(tool, path=path) is None:
            directory = str(Path(found).parent)
            if directory not in dirs:
                dirs.append(directory)
    return {
        "PATH": os.pathsep.join([*dirs, path]),
        "GOMODCACHE": str(cache_root / "go" / "mod"),
        "GOCACHE": str(cache_root / "go" / "build"),
        "GOTOOLCHAIN": "local",
        "GOFLAGS": "-modcacherw",
        "MAVEN_OPTS": f"-Dmaven.repo.local={cache_root / 'maven' / 'repository'}",
        "GRADLE_USER_HOME": str(cache_root / "gradle"),
        "GRADLE_OPTS": "-Dorg.gradle.daemon=false",  # no daemon outliving the build
    }
