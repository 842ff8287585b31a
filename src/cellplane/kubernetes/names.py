"""Names and labels of the Kubernetes objects a data plane renders: bounded, collision-free DNS-1123 labels.

A cell (organization, project, environment) is a namespace; a deployment's objects are named after its
component and API version (``orders-v1``: the control plane sends one deployment per component and major version
in an environment). A name is *exact* when every part already is a lowercase DNS label without ``--`` and the
parts joined with ``--`` fit the bound (``acme--shop--dev``); otherwise it is *hashed*: the parts made readable
(lowercased, other characters as ``-``), joined, cut to fit, then ``---`` and 12 hex digits of the SHA-256 of the
exact parts. The two forms cannot meet (an exact name never holds ``---``), and two hashed names meet only if
48 bits of SHA-256 do. Label values follow the same idea: the value itself when Kubernetes accepts it, else a
readable cut and a hash. Cost: one regular-expression match per part; a hash only for the names that need one.
"""

from __future__ import annotations

import hashlib
import re

DNS_LABEL = 63
_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
_HASH = 12
CRONJOB = 52
SEPARATOR = "--"

# the label keys every rendered object carries (app.kubernetes.io/* for tools, cellplane.dev/* for the agent)
PART_OF = "app.kubernetes.io/part-of"
MANAGED_BY = "app.kubernetes.io/managed-by"
NAME = "app.kubernetes.io/name"
INSTANCE = "app.kubernetes.io/instance"
VERSION = "app.kubernetes.io/version"
COMPONENT = "app.kubernetes.io/component"
ORGANIZATION = "cellplane.dev/organization"
DATA_PLANE = "cellplane.dev/data-plane"
PROJECT = "cellplane.dev/project"
ENVIRONMENT = "cellplane.dev/environment"
CELL_COMPONENT = "cellplane.dev/component"
DEPLOYMENT = "cellplane.dev/deployment"
RELEASE = "cellplane.dev/release"
RUN = "cellplane.dev/run"
GATEWAY = "cellplane.dev/gateway"
MANAGER = "cellplane"


def digest(*parts: str) -> str:
    """12 hex digits of the SHA-256 of the parts (NUL-separated, so no two tuples share an input)."""
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:_HASH]


def is_dns_label(text: str) -> bool:
    return len(text) <= DNS_LABEL and _LABEL.fullmatch(text) is not None


def _readable(part: str) -> str:
    """A part lowercased, every run of other characters (and of ``-``) as one ``-``, trimmed."""
    return re.sub(r"[^a-z0-9]+", "-", part.lower()).strip("-")


def bounded(*parts: str, limit: int = DNS_LABEL) -> str:
    """A DNS-1123 label of at most ``limit`` characters naming ``parts`` and nothing else (the module's rule)."""
    exact = SEPARATOR.join(parts)
    if len(exact) <= limit and all(is_dns_label(p) and SEPARATOR not in p for p in parts):
        return exact
    suffix = "---" + digest(*parts)
    prefix = SEPARATOR.join(p for p in map(_readable, parts) if p)[: limit - len(suffix)].rstrip("-")
    return (prefix + suffix) if prefix else "x" + suffix


def namespace(organization: str, project: str, environment: str) -> str:
    """The namespace of a cell."""
    return bounded(organization, project, environment)


def workload(component: str, version: str) -> str:
    """The name of a deployment's Deployment or CronJob, ConfigMap and Secret (in its cell's namespace): at most
    52 characters, a CronJob's bound (its Jobs' names add 11)."""
    return bounded(component, version, limit=CRONJOB)


def service(component: str, version: str, endpoint: str) -> str:
    """The Service of one endpoint of a deployment. A Service name is a DNS-1035 label (it starts with a letter):
    a name that would start with a digit takes the hashed form with ``s-`` in front, hashed over one more part
    than any other name, so it meets no other."""
    name = bounded(component, version, endpoint)
    if name[0].isalpha():
        return name
    suffix = "---" + digest(component, version, endpoint, "service")
    return ("s-" + SEPARATOR.join(map(_readable, (component, version, endpoint))))[: DNS_LABEL - len(suffix)] \
        .rstrip("-") + suffix


def run(run_id: str) -> str:
    """The Job of a manual run."""
    return bounded("run", run_id)


def label_value(value: str) -> str:
    """``value`` when Kubernetes takes it as a label value (63 characters, alphanumerics, ``-_.`` inside), else
    a readable cut of it, ``---`` and a hash (always a valid value)."""
    if len(value) <= DNS_LABEL and _LABEL_VALUE.fullmatch(value):
        return value
    return bounded(value)


def cell_labels(organization: str, data_plane: str, project: str, environment: str) -> dict[str, str]:
    """The labels of a cell's namespace and of everything in it."""
    return {MANAGED_BY: MANAGER, PART_OF: label_value(project), ORGANIZATION: label_value(organization),
            DATA_PLANE: label_value(data_plane), PROJECT: label_value(project),
            ENVIRONMENT: label_value(environment)}


def selector(component: str, version: str) -> dict[str, str]:
    """The labels that select a deployment's pods: fixed for as long as its objects keep their name (a
    Deployment's selector cannot change), so no release, track or deployment id in them."""
    return {NAME: label_value(component), INSTANCE: workload(component, version)}


def deployment_labels(cell: dict[str, str], component: str, version: str, type_: str, deployment: str,
                      release: str) -> dict[str, str]:
    """The labels of every object of one deployment (and of its pods): its cell's, its selector's, and what ties
    it to the deployment and release (what the agent prunes and reports by)."""
    return {**cell, **selector(component, version), VERSION: label_value(version), COMPONENT: label_value(type_),
            CELL_COMPONENT: label_value(component), DEPLOYMENT: label_value(deployment),
            RELEASE: label_value(release)}
