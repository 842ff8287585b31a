"""An OpenChoreo object's ``metadata`` as a Cellplane document's, and the names its annotations give.

OpenChoreo keeps a resource's display name and description in annotations; Cellplane has spec fields for them,
so they are copied there (the annotations stay, as every label and annotation does). The namespace is
OpenChoreo's tenant, which Cellplane calls an organization.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cellplane.openchoreo.reader import Reader

DISPLAY_NAME = "openchoreo.dev/display-name"
DESCRIPTION = "openchoreo.dev/description"
# Set by the Kubernetes API server; accepted so that `kubectl get -o yaml` output can be applied, then ignored.
SERVER_SET = ("uid", "resourceVersion", "generation", "creationTimestamp", "managedFields", "selfLink",
              "deletionTimestamp", "deletionGracePeriodSeconds")
NO_EQUIVALENT = ("finalizers", "ownerReferences", "generateName")


@dataclass
class Meta:
    metadata: dict[str, Any]
    display_name: str | None
    description: str | None

    @property
    def name(self) -> str | None:
        name = self.metadata.get("name")
        return name if isinstance(name, str) else None

    def titles(self) -> dict[str, str]:
        """``displayName`` and ``description`` spec fields, where the annotations give them."""
        out = {"displayName": self.display_name, "description": self.description}
        return {k: v for k, v in out.items() if v}


def read_metadata(r: Reader, raw: Any, *, namespaced: bool = True) -> Meta:
    """``metadata`` mapped: name, namespace as organization (for namespaced kinds), labels and annotations."""
    data = r.mapping(raw, "metadata", required=True)
    if data is None:
        return Meta({}, None, None)
    r.fields(data, "metadata", ("name", "namespace", "labels", "annotations", *SERVER_SET, *NO_EQUIVALENT))
    r.text(data.get("name"), "metadata.name", required=True)
    out: dict[str, Any] = {"name": data.get("name")}  # validated as a Cellplane name later, at the same path
    namespace = r.name(data.get("namespace"), "metadata.namespace")
    if namespace is not None:
        if namespaced:
            out["organization"] = namespace
            r.origin("metadata.organization", "metadata.namespace")
        else:
            r.warn("metadata.namespace", "ignored: this kind is not namespaced")
    for key in ("labels", "annotations"):
        if data.get(key) is not None:
            out[key] = data[key]  # Cellplane's bounds on labels and annotations apply, at the same paths
    r.no_equivalent(data, "metadata", NO_EQUIVALENT, "no equivalent in Cellplane; ignored")
    given = data.get("annotations")
    annotations: dict[Any, Any] = given if isinstance(given, dict) else {}
    display = annotations.get(DISPLAY_NAME)
    description = annotations.get(DESCRIPTION)
    return Meta(out,
                display[:200] if isinstance(display, str) else None,
                description[:2000] if isinstance(description, str) else None)
