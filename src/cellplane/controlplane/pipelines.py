"""Deployment pipelines: the promotion paths a project's releases move along, and which moves need approval."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from cellplane.controlplane import resources
from cellplane.errors import ConflictError, FieldProblem, InvalidError
from cellplane.model import KINDS
from cellplane.store.tables import ResourceRow


def of_project(s: Session, org: str, project: str) -> ResourceRow:
    row = resources.get(s, resources.Scope(KINDS["Project"], org), project)
    name = (row.spec or {}).get("deploymentPipeline") or "default"
    pipeline = resources.find(s, resources.Scope(KINDS["DeploymentPipeline"], org), name)
    if pipeline is None:
        raise ConflictError(f"project '{project}' uses deployment pipeline '{name}', which does not exist",
                            code="no-pipeline")
    return pipeline


def paths(pipeline: ResourceRow) -> list[dict[str, Any]]:
    return list((pipeline.spec or {}).get("promotionPaths") or [])


def describe(pipeline: ResourceRow) -> str:
    moves = [f"{p['source']} → {t['name']}" for p in paths(pipeline) for t in p.get("targets") or []]
    return ", ".join(moves) or "none"


def promotion_target(pipeline: ResourceRow, source: str, destination: str) -> dict[str, Any]:
    """The promotion path's target entry; refuses a move that is not a path of the pipeline."""
    for p in paths(pipeline):
        if p.get("source") == source:
            for t in p.get("targets") or []:
                if t.get("name") == destination:
                    return dict(t)
    raise InvalidError(f"pipeline '{pipeline.name}' has no promotion path {source} → {destination} "
                       f"(its paths: {describe(pipeline)})", [FieldProblem("to", "not a promotion path from "
                                                                                  f"'{source}'")])


def first_environment(pipeline: ResourceRow) -> str | None:
    """Where a pipeline starts: the first source that is no path's target."""
    targets = {t.get("name") for p in paths(pipeline) for t in p.get("targets") or []}
    return next((p["source"] for p in paths(pipeline) if p.get("source") not in targets), None)


def requires_approval(env: ResourceRow, path_target: dict[str, Any] | None = None) -> bool:
    """An environment requires approval when it says so (by default: when it is a production environment); a
    promotion path can require it too."""
    spec = env.spec or {}
    flag = spec.get("requiresApproval")
    env_flag = bool(spec.get("production")) if flag is None else bool(flag)
    return env_flag or bool((path_target or {}).get("requiresApproval"))
