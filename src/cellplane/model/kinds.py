"""Specs of the platform-level kinds: Organization, Project, Environment, DeploymentPipeline, DataPlane."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from cellplane.errors import FieldProblem
from cellplane.model.meta import Name, Strict
from cellplane.model.registry import RegistrySpec


class OrganizationSpec(Strict):
    displayName: str | None = Field(default=None, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    registry: RegistrySpec | None = Field(default=None, description="where built images are pushed (docs/images.md)")


Threshold = Literal["critical", "high", "medium", "low", "none"]


class FailOn(Strict):
    """Which build findings fail a build; a severity threshold fails on that severity and above."""

    secrets: bool = Field(default=True, description="a secret found in the source fails the build")
    vulnerabilities: Threshold = Field(default="critical", description="dependency vulnerabilities (OSV)")
    staticAnalysis: Threshold = Field(default="none", description="Python static analysis (bandit)")
    tests: bool = Field(default=True, description="failing unit tests fail the build")


class BuildPolicy(Strict):
    failOn: FailOn = Field(default_factory=FailOn)


class ProjectSpec(Strict):
    displayName: str | None = Field(default=None, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    buildPolicy: BuildPolicy = Field(default_factory=BuildPolicy, description="which build findings fail a build")
    deploymentPipeline: Name = Field(default="default", description="Promotion pipeline this project uses")


class EnvironmentSpec(Strict):
    displayName: str | None = Field(default=None, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    dataPlane: Name | None = Field(default=None, description="DataPlane the environment runs on")
    production: bool = False
    requiresApproval: bool | None = Field(
        default=None, description="Deploys into this environment need approval (defaults to `production`)"
    )


class PromotionTarget(Strict):
    name: Name
    requiresApproval: bool = False


class PromotionPath(Strict):
    source: Name
    targets: list[PromotionTarget] = Field(min_length=1)


class DeploymentPipelineSpec(Strict):
    displayName: str | None = Field(default=None, max_length=200)
    promotionPaths: list[PromotionPath] = Field(default_factory=list)

    def problems(self) -> list[FieldProblem]:
        out: list[FieldProblem] = []
        seen: set[str] = set()
        for i, path in enumerate(self.promotionPaths):
            if path.source in seen:
                out.append(FieldProblem(f"promotionPaths[{i}].source", f"'{path.source}' is listed twice"))
            seen.add(path.source)
            for j, target in enumerate(path.targets):
                if target.name == path.source:
                    out.append(FieldProblem(f"promotionPaths[{i}].targets[{j}].name",
                                            "an environment cannot promote to itself"))
        return out


class Gateway(Strict):
    externalUrl: str | None = Field(default=None, description="Base URL of the external (Public) gateway")
    internalUrl: str | None = Field(default=None, description="Base URL of the internal (Organization) gateway")


class KubernetesTarget(Strict):
    apiServer: str | None = None
    context: str | None = None
    namespacePrefix: str = Field(default="cp", max_length=20)


class DataPlaneSpec(Strict):
    type: Literal["local", "kubernetes"] = "local"
    displayName: str | None = Field(default=None, max_length=200)
    gateway: Gateway = Field(default_factory=Gateway)
    kubernetes: KubernetesTarget | None = None
    registry: RegistrySpec | None = Field(default=None, description="the registry this data plane pulls from, "
                                          "instead of its organization's (docs/images.md)")

    def problems(self) -> list[FieldProblem]:
        if self.type == "local" and self.kubernetes is not None:
            return [FieldProblem("kubernetes", "only a data plane of type 'kubernetes' takes kubernetes settings")]
        return []
