"""The resource model: Kubernetes-shaped documents, ``apiVersion: cellplane.dev/v1alpha1``."""

from cellplane.model.component import ComponentSpec
from cellplane.model.document import BY_PLURAL, KINDS, Document, KindInfo, kind_info, parse_document, validate_spec
from cellplane.model.kinds import (
    DataPlaneSpec,
    DeploymentPipelineSpec,
    EnvironmentSpec,
    OrganizationSpec,
    ProjectSpec,
)
from cellplane.model.meta import Metadata, dns_label_problem

__all__ = [
    "BY_PLURAL",
    "KINDS",
    "ComponentSpec",
    "DataPlaneSpec",
    "DeploymentPipelineSpec",
    "Document",
    "EnvironmentSpec",
    "KindInfo",
    "Metadata",
    "OrganizationSpec",
    "ProjectSpec",
    "dns_label_problem",
    "kind_info",
    "parse_document",
    "validate_spec",
]
