"""Where built images go: an organization's container registry (``spec.registry``), overridable per DataPlane.

``url`` is the registry's base URL (``https://``; ``http://`` only for a registry on this machine's loopback);
``repositoryPrefix`` comes before ``<organization>/<project>/<component>`` in each image's repository;
``credentials.password`` is write-only: ``lifecycle`` moves it out of the stored spec into encrypted
configuration storage (``controlplane/registries``), and reads leave it out; ``baseImages`` maps a runtime
(``python``, ``node``, ``static``, ``go``, ``java``, ``php``, ``ruby``, ``binary``) to a reference in the same registry;
``sign`` (default on) signs every image with the organization's key.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, Field, StrictBool, WithJsonSchema

from cellplane.model.meta import Strict

RUNTIMES = ("python", "node", "static", "go", "java", "php", "ruby", "binary")
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
REPOSITORY = re.compile(rf"^(?:{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*)?$")
REFERENCE = re.compile(rf"^{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}}"
                       r"|@sha256:[a-f0-9]{64})?$")
# The schema states the whole rule (tests/test_schemathesis.py checks that nothing valid by it is refused): https to
# any host name, plain http to this machine's loopback only, an optional port, nothing after the host.
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_PORT = r"(?::[0-9]{1,5})?"
URL = re.compile(rf"^(?:https://[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?{_PORT}"
                 rf"|http://(?:localhost|127\.{_OCTET}\.{_OCTET}\.{_OCTET}|\[::1\]){_PORT})/?$")


def _registry_url(value: str) -> str:
    if URL.fullmatch(value):
        return value.rstrip("/")
    if value.startswith("http://") and "/" not in value[len("http://"):].rstrip("/"):
        raise ValueError(f"'{value}': plain http is only for a registry on this machine's loopback "
                         "(127.0.0.1, localhost, [::1]); use https://")
    raise ValueError(f"'{value}' is not a registry URL: give https://host[:port] only (the repository goes in "
                     "repositoryPrefix)")


def _repository(value: str) -> str:
    if not REPOSITORY.fullmatch(value):
        raise ValueError(f"'{value}' is not a repository path: lower-case letters, digits, '.', '_', '-', "
                         "separated by '/'")
    return value


def _reference(value: str) -> str:
    if not REFERENCE.fullmatch(value):
        raise ValueError(f"'{value}' is not an image reference in the registry (name:tag or name@sha256:...)")
    return value


RegistryUrl = Annotated[str, Field(max_length=500), AfterValidator(_registry_url),
                        WithJsonSchema({"type": "string", "maxLength": 500, "pattern": URL.pattern})]
RepositoryPath = Annotated[str, Field(max_length=200), AfterValidator(_repository),
                           WithJsonSchema({"type": "string", "maxLength": 200, "pattern": REPOSITORY.pattern})]
ImageReference = Annotated[str, Field(max_length=300), AfterValidator(_reference),
                           WithJsonSchema({"type": "string", "maxLength": 300, "pattern": REFERENCE.pattern})]


class BaseImages(Strict):
    """A runtime's base image, as a reference in the same registry; a runtime not given takes the default."""

    python: ImageReference | None = None
    node: ImageReference | None = None
    static: ImageReference | None = None
    go: ImageReference | None = None
    java: ImageReference | None = None
    php: ImageReference | None = None
    ruby: ImageReference | None = None
    binary: ImageReference | None = Field(default=None, description="a Dockerfile's compiled binary")


class RegistryCredentials(Strict):
    username: str = Field(min_length=1, max_length=200)
    password: str | None = Field(default=None, max_length=8192,
                                 description="write-only: stored encrypted, never shown")


class RegistrySpec(Strict):
    url: RegistryUrl
    repositoryPrefix: RepositoryPath = ""
    credentials: RegistryCredentials | None = None
    baseImages: BaseImages = Field(default_factory=BaseImages,
                                   description="runtime -> base image reference in this registry")
    sign: StrictBool = Field(default=True, description="sign each image with the organization's key")
    keepTags: int | None = Field(default=None, ge=1, le=100000,
                                 description="keep the images of each component's last N builds (and every deployed "
                                 "one); older ones are deleted when the registry allows deletes. Unset: keep all")
