"""What a Dockerfile's base image stands for, when the image itself is never pulled.

A stage of a Dockerfile built without Docker runs on the machine's own toolchains, so all that
matters about ``FROM golang:1.22-alpine`` is its *kind*: which tools its RUN lines may use and
what its last stage can become. :func:`classify` maps an image reference onto one of:

* toolchains, for build stages (and last stages that run what they built): ``python``, ``node``,
  ``go`` (golang), ``maven`` (JDK + mvn), ``gradle`` (JDK + gradle), ``jdk`` (eclipse-temurin,
  openjdk, amazoncorretto, sapmachine, ibm-semeru-runtimes);
* runtimes, for last stages: ``jre`` (a ``*-jre`` tag, ``gcr.io/distroless/java*``), ``os``
  (alpine, debian, ubuntu, busybox, scratch, distroless, UBI, Chainguard's static) for a copied
  binary, ``web`` (nginx, nginx-unprivileged, httpd, caddy) for static files.

On Docker Hub only official images count (``nginx``, ``library/nginx``; ``someone/nginx`` could be
anything), plus a few well-known namespaces (``nginxinc/nginx-unprivileged``, ``bitnami/nginx``);
behind a registry host any path ending in a known name is taken for a mirror. Pure string work.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

__all__ = ["STATIC_ROOTS", "BaseImage", "Kind", "classify", "split_image"]

Kind = Literal["python", "node", "go", "maven", "gradle", "jdk", "jre", "os", "web"]

_VERSION = re.compile(r"v?(\d+(?:\.\d+)*)")
_JDK_NAMES = frozenset({"eclipse-temurin", "openjdk", "amazoncorretto", "sapmachine", "ibm-semeru-runtimes",
                        "ibmjava", "adoptopenjdk"})
_OS_NAMES = frozenset({"alpine", "debian", "ubuntu", "busybox", "scratch", "ubi", "ubi-minimal", "ubi-micro",
                       "ubi8", "ubi9", "ubi8-minimal", "ubi9-minimal", "ubi8-micro", "ubi9-micro", "static",
                       "wolfi-base", "fedora", "centos", "rockylinux", "almalinux", "amazonlinux"})
_WEB_NAMES = frozenset({"nginx", "nginx-unprivileged", "httpd", "caddy", "openresty"})
_NAMESPACES = frozenset({"nginxinc", "bitnami", "chainguard", "redhat", "ubi8", "ubi9", "caddy"})
_SIMPLE: dict[str, Kind] = {"python": "python", "node": "node", "golang": "go", "maven": "maven", "gradle": "gradle"}

# Where each web server image serves files from by default, first the most usual.
STATIC_ROOTS: dict[str, tuple[str, ...]] = {
    "nginx": ("/usr/share/nginx/html",),
    "nginx-unprivileged": ("/usr/share/nginx/html",),
    "openresty": ("/usr/local/openresty/nginx/html", "/usr/share/nginx/html"),
    "httpd": ("/usr/local/apache2/htdocs",),
    "caddy": ("/usr/share/caddy", "/srv"),
}


@dataclass(frozen=True)
class BaseImage:
    ref: str  # as written, after ARG substitution: "golang:1.22-alpine"
    kind: Kind
    name: str  # the repository's last path segment: "golang", "nginx-unprivileged", "static-debian12"
    version: str | None  # from the tag: "1.22", "20"; None for "latest" and other words


def classify(ref: str) -> BaseImage | None:
    """The kind of image ``ref`` names, or None when it is none Cellplane can stand in for."""
    host, path, tag = split_image(ref)
    parts = path.lower().split("/")
    name = parts[-1]
    namespace = parts[:-1]
    trusted = host is not None or namespace in ([], ["library"]) or (len(namespace) == 1
                                                                     and namespace[0] in _NAMESPACES)
    version = _VERSION.match(tag) if tag else None
    shown = version.group(1) if version else None
    if "distroless" in namespace:
        return BaseImage(ref, _distroless_kind(name), name, shown)
    if not trusted:
        return None
    kind = _kind(name, (tag or "").lower())
    return BaseImage(ref, kind, name, shown) if kind else None


def _kind(name: str, tag: str) -> Kind | None:
    if name in _SIMPLE:
        return _SIMPLE[name]
    if name in _JDK_NAMES:
        return "jre" if "jre" in tag.split("-") or tag.startswith("jre") else "jdk"
    if name in _WEB_NAMES:
        return "web"
    if name in _OS_NAMES or name.startswith(("ubi", "static-", "debian-")):
        return "os"
    return None


def _distroless_kind(name: str) -> Kind:
    if name.startswith("java"):
        return "jre"
    if name.startswith("nodejs"):
        return "node"
    if name.startswith("python"):
        return "python"
    return "os"


def split_image(ref: str) -> tuple[str | None, str, str | None]:
    """``(registry host or None, repository path, tag or None)`` of an image reference."""
    name = ref.split("@", 1)[0]
    tag = None
    if ":" in name.rsplit("/", 1)[-1]:
        name, tag = name.rsplit(":", 1)
    parts = name.split("/")
    host = None
    if len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        host, parts = parts[0], parts[1:]
    if host is not None and parts[:-1] in (["library"], ["docker", "library"]):
        parts = parts[-1:]
    return host, "/".join(parts), tag
