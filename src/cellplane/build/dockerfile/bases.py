"""Base images: what a stage's ``FROM`` stands for, and which of the machine's tools its RUN lines may use.

The image kinds come from :mod:`cellplane.build.baseimages`; this module adds the RUN tools of each
kind and how a Go binary is recognised (one read of the file)."""

from __future__ import annotations

import platform
from pathlib import Path

from cellplane.build.baseimages import BaseImage, classify
from cellplane.build.dockerfile.parsing import fail

STAGE_TOOLS: dict[str, frozenset[str]] = {
    "go": frozenset({"go"}),
    "maven": frozenset({"mvn", "mvnw", "java", "javac", "jar"}),
    "gradle": frozenset({"gradle", "gradlew", "java", "javac", "jar"}),
    "jdk": frozenset({"mvnw", "gradlew", "java", "javac", "jar"}),
    "jre": frozenset({"java"}),
}
TOOL_KINDS = {
    "go": "a golang:* image",
    "mvn": "a maven:* image",
    "mvnw": "a JDK image (maven:*, eclipse-temurin:*, openjdk:*, amazoncorretto:*)",
    "gradle": "a gradle:* image",
    "gradlew": "a JDK image (gradle:*, eclipse-temurin:*, openjdk:*, amazoncorretto:*)",
    "java": "a Java image", "javac": "a JDK image", "jar": "a JDK image",
}
GO_SUBCOMMANDS = frozenset({"build", "mod", "install", "test", "vet", "generate", "env", "version", "list", "get"})
_BASE_KINDS = (
    "python:*, node:*, golang:*, maven:*, gradle:*, JDK and JRE images (eclipse-temurin, openjdk, amazoncorretto, "
    "distroless/java), alpine/debian/ubuntu/busybox/distroless/scratch, nginx/nginx-unprivileged/httpd/caddy"
)


def base_image(ref: str, line: int) -> BaseImage:
    """The kind of a stage's base image; anything Cellplane cannot stand in for fails naming the line."""
    image = classify(ref)
    if image is None:
        raise fail(
            line,
            f"base image '{ref}' is not one Cellplane can build without Docker (supported: {_BASE_KINDS})",
        )
    return image


def go_arch() -> str:
    machine = platform.machine().lower()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}.get(machine, machine)


def is_go_binary(path: Path) -> bool:
    """Whether ``path`` is an executable built by Go: ELF with Go's build information (one read of the file)."""
    try:
        with path.open("rb") as f:
            if f.read(4) != b"\x7fELF":
                return False
            return b"\xff Go buildinf:" in f.read()
    except OSError:
        return False
