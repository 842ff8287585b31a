"""Where built images go: an organization's container registry (``spec.registry``), overridable per DataPlane.

``url`` is the registry's base URL (``https://``; ``http://`` only for a registry on this machine's loopback);
``repositoryPrefix`` comes before ``<organization>/<project>/<component>`` in each image's repository;
``credentials.password`` is write-only: ``lifecycle`` moves it out of the stored spec into encrypted
configuration storage (``controlplane/registries``), and reads show it masked; ``baseImages`` maps a runtime
(``python``, ``node``, ``static``, ``go``, ``java``, ``php``, ``ruby``) to a reference in the same registry;
``sign`` (default on) signs every image with the organization's key.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, WithJsonSchema

from cellplane.model.meta import Strict

RUNTIMES = ("python", "node", "static", "go", "java", "php", "ruby")
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
REPOSITORY = re.compile(rf"^{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*$")
REFERENCE = re.compile(rf"^{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}}"
                       r"|@sha256:[a-f0-9]{64})?$")


def _registry_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"'{value}' is not a registry URL: use https://host[:port]")
    if parts.path.strip("/") or parts.query or parts.fragment or parts.username:
        raise ValueError(f"'{value}': give the registry's base URL only (https://host[:port]); "
                         "the repository goes in repositoryPrefix")
    if parts.scheme == "http" and not _loopback(parts.hostname):
        raise ValueError(f"'{value}': plain http is only for a registry on this machine's loopback; use https://")
    return value.rstrip("/")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _repository(value: str) -> str:
    if value and not REPOSITORY.fullmatch(value):
        raise ValueError(f"'{value}' is not a repository path: lower-case letters, digits, '.', '_', '-', "
                         "separated by '/'")
    return value


def _reference(value: str) -> str:
    if not REFERENCE.fullmatch(value):
        raise ValueError(f"'{value}' is not an image reference in the registry (name:tag or name@sha256:...)")
    return value


def _runtimes(value: dict[str, str]) -> dict[str, str]:
    unknown = sorted(set(value) - set(RUNTIMES))
    if unknown:
        raise ValueError(f"unknown runtime {', '.join(unknown)}: one of {', '.join(RUNTIMES)}")
    return value


RegistryUrl = Annotated[str, Field(max_length=500), AfterValidator(_registry_url),
                        WithJsonSchema({"type": "string", "pattern": "^https?://"})]
RepositoryPath = Annotated[str, Field(max_length=200), AfterValidator(_repository)]
ImageReference = Annotated[str, Field(max_length=300), AfterValidator(_reference)]


class RegistryCredentials(Strict):
    username: str = Field(min_length=1, max_length=200)
    password: str | None = Field(default=None, max_length=8192,
                                 description="write-only: stored encrypted, never shown")


class RegistrySpec(Strict):
    url: RegistryUrl
    repositoryPrefix: RepositoryPath = ""
    credentials: RegistryCredentials | None = None
    baseImages: Annotated[dict[str, ImageReference], AfterValidator(_runtimes)] = Field(
        default_factory=dict, description="runtime -> base image reference in this registry")
    sign: bool = Field(default=True, description="sign each image with the organization's key")
