"""A component's scaling per environment: what it resolves to (``view``) and ``cellplane scale`` (``set_environment``).

Scaling lives in the component's spec (``spec.scaling``, ``cellplane.model.scaling``); the desired state reads it
from the component's current spec, so a change reaches the running deployments at their data plane's next poll,
without a new release (``releases.RELEASE_EXCLUDED``). ``set_environment`` changes ``spec.scaling.environments.<env>``
and stores the component through ``lifecycle.apply``, the function behind ``apply``: the same validation (every
problem at its field path), the same per-kind steps, in the caller's one audited transaction.
"""

from __future__ import annotations

import copy
from typing import Any

from sqlalchemy.orm import Session

from cellplane.controlplane import dataplanes, deployments, lifecycle, resources
from cellplane.controlplane.keyring import KeyRing
from cellplane.model import KINDS, parse_document, scaling
from cellplane.store.tables import ResourceRow


def view(s: Session, component: ResourceRow) -> dict[str, Any]:
    """The component's scaling in each environment of its organization (by name): the resolved settings (null: its
    fixed replicas run), whether the environment is a production one, and the override written for it."""
    spec = component.spec or {}
    overrides = (spec.get("scaling") or {}).get("environments") or {}
    items = []
    for env in dataplanes.environments(s, component.organization):
        production = bool((env.spec or {}).get("production"))
        resolved = scaling.resolve(spec, env.name, production)
        items.append({"environment": env.name, "production": production, "replicas": spec.get("replicas", 1),
                      "scaling": resolved.as_dict() if resolved is not None else None,
                      "override": overrides.get(env.name)})
    return {"project": component.project, "component": component.name,
            "wakeable": scaling.wake_problem(spec) is None, "items": items}


def set_environment(s: Session, keyring: KeyRing, component: ResourceRow, environment: str,
                    changes: dict[str, Any], actor: str) -> str:
    """Merge ``changes`` into ``spec.scaling.environments.<environment>`` (a field set to None is removed; an override
    left empty goes) and store the component as ``apply`` does. Returns the apply's action (configured or
    unchanged). A spec that the change makes invalid is refused with its field paths, and nothing is stored."""
    deployments.environment(s, component.organization, environment, "path.environment")
    spec = copy.deepcopy(component.spec or {})
    section = dict(spec.get("scaling") or {})
    overrides = dict(section.get("environments") or {})
    override = dict(overrides.get(environment) or {})
    for key, value in changes.items():
        if value is None:
            override.pop(key, None)
        else:
            override[key] = value
    if override:
        overrides[environment] = override
    else:
        overrides.pop(environment, None)
    section["environments"] = overrides
    spec["scaling"] = section
    document = resources.to_document(component)
    document["spec"] = spec
    doc = parse_document(document)
    place = resources.Scope(KINDS["Component"], component.organization, component.project)
    return lifecycle.apply(s, doc, place, keyring, actor)[0].action
