"""OpenChoreo compatibility: its ``openchoreo.dev/v1alpha1`` resources, and the workload descriptor a repository
carries, read as Cellplane's model.

``translate`` maps the OpenChoreo documents of an apply request (Organization, DataPlane, Environment,
DeploymentPipeline, Project, Component, Workload) onto ``cellplane.dev/v1alpha1`` ones; a Workload becomes part of
its Component (the request's, or the stored one: ``Translation.pending``); a ReleaseBinding becomes a deploy
request (``Translation.bindings``, done by the apply route); a SecretReference and the kinds with no equivalent are
one warning each (``Translation.notes``). What has no equivalent is a warning
at its field path, what is wrong an error at its field path. ``repository`` reads a source's descriptor,
Choreo's or OpenChoreo's ``workload.yaml`` (``descriptor``), as a partial Component spec.

Modules: ``translate`` (the request: detect, map, merge, and take problems back to where they were written),
``platform`` and ``component`` (one mapper per kind), ``actions`` (ReleaseBinding, SecretReference, the
kinds with no equivalent), ``workload`` (endpoints, connections, env, files: shared by
the Workload resource and the repository's descriptor), ``meta`` (metadata), ``reader`` (typed reads with paths),
``descriptor`` and ``repository`` (a source's ``workload.yaml``).
"""

from cellplane.openchoreo.actions import Binding
from cellplane.openchoreo.translate import (
    KINDS,
    OPENCHOREO_API_VERSION,
    PendingWorkload,
    Translation,
    is_openchoreo,
    translate,
)

__all__ = ["KINDS", "OPENCHOREO_API_VERSION", "Binding", "PendingWorkload", "Translation", "is_openchoreo",
           "translate"]
