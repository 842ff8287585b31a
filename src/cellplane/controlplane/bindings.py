"""An OpenChoreo ReleaseBinding applied: a component made to run in an environment (or stop running there) through
the same functions as ``cellplane deploy``, ``promote`` and ``undeploy``, inside the apply's transaction (so a
binding that cannot be done refuses the whole apply, and a dry run stores nothing).

OpenChoreo binds a named ComponentRelease; Cellplane makes a release from a build when it deploys, so a binding
runs what Cellplane would: what runs in an environment the pipeline promotes from into this one (a promotion, the
same artifact: build once, deploy many), else the component's latest succeeded build. Cost: a few indexed reads
and the deploy's own writes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.orm import Session

from cellplane.controlplane import config, deployments, pipelines
from cellplane.controlplane.keyring import KeyRing
from cellplane.store.tables import ResourceRow


@dataclass(frozen=True)
class Bound:
    """What a binding did: ``deployed``, ``promoted``, ``pending`` (an approval request), ``undeployed`` or
    ``unchanged``, and in a few words how."""

    action: str
    detail: str


def bind(s: Session, keyring: KeyRing, component: ResourceRow, env: str, actor: str, *,
         undeploy: bool = False, values: Sequence[tuple[str, str]] = ()) -> Bound:
    """Run (or, ``undeploy``, stop) ``component`` in ``env``; ``values`` (environment variables) are set as its
    configuration in ``env`` first, as ``cellplane config set --env`` sets them, so the release carries them."""
    org = component.organization
    changed = [key for key, value in values
               if config.set_value(s, keyring, org, component.project, component.name, env, key, value, False,
                                   actor)[1]]
    if changed and not undeploy:
        bound = _run(s, keyring, component, env, actor)
        return Bound(bound.action, f"{bound.detail}; {', '.join(changed)} set in {env}")
    return _run(s, keyring, component, env, actor, undeploy)


def _run(s: Session, keyring: KeyRing, component: ResourceRow, env: str, actor: str, undeploy: bool = False
         ) -> Bound:
    org = component.organization
    if undeploy:
        deployments.environment(s, org, env)
        rows = deployments.list_rows(s, org, component.project, component.name, env)
        if not rows:
            return Bound("unchanged", f"not deployed in {env}")
        return Bound("undeployed", ", ".join(deployments.undeploy(s, row, actor) for row in rows))
    pipeline = pipelines.of_project(s, org, component.project)
    for source in sources(pipeline, env):
        dep = deployments.find(s, org, component.project, component.name, source)
        if dep is not None and dep.release_id is not None:
            outcome = deployments.promote(s, keyring, component, source, env, actor, dep.track)
            return _bound(outcome, "promoted", f"from {source} to {env}")
    return _bound(deployments.deploy(s, keyring, component, env, None, actor), "deployed", f"to {env}")


def sources(pipeline: ResourceRow, env: str) -> list[str]:
    """The environments the pipeline promotes from into ``env``, in the pipeline's order."""
    return [p["source"] for p in pipelines.paths(pipeline)
            if any(t.get("name") == env for t in p.get("targets") or [])]


def _bound(outcome: deployments.Outcome, done: str, where: str) -> Bound:
    release = outcome.release.id
    if outcome.action == "pending":
        assert outcome.approval is not None
        return Bound("pending", f"{where}: release {release} waits for approval ({outcome.approval.id})")
    if outcome.action == "unchanged":
        return Bound("unchanged", f"{where}: release {release} runs there already")
    return Bound(done, f"{where}: release {release}")
