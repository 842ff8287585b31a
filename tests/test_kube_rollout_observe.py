"""The Kubernetes runtime observes a rollout closely and an idle data plane at its normal period, against the real
test cluster (tests/kubecluster.py; kwok's fake node makes the pods Running and Ready).

The runtime's normal observation period is an hour here: a release's ready can only be seen by the passes an
apply that wrote a Deployment starts (``rollout_interval``), counted by the runtime itself (``observe_passes``,
``rollout_passes``, ``observe_delay``: the wait it chose after its last pass). No wall-clock timing is asserted.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from cellplane.contract import DesiredState
from cellplane.dataplane.agent import AgentSettings
from cellplane.kubernetes.runtime import KubernetesRuntime, KubernetesSettings
from desiredkit import deployment_wire
from kubeagentkit import system_namespace
from kubecluster import KubeCluster
from kuberuntimekit import IMAGE, Host, Kube, Loop, state

PLANE = "kube-rollout"
ID = "dep_0000000fast"
OTHER = "dep_000000other"  # a cell of its own (project other), deployed once and left alone
HOUR = 3600.0


@pytest.fixture(scope="module")
def kube(kube_cluster: KubeCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kube]:
    system_namespace(kube_cluster)  # (the data plane's manifest installs it: the gateways' routes go there)
    host = Host(tmp_path_factory.mktemp("kube-rollout-agent"))
    settings = AgentSettings(controlplane="http://127.0.0.1:9", token="t", data_dir=host.state.root, name=PLANE,
                             organization="acme", runtime="kubernetes")
    runtime = KubernetesRuntime(settings, KubernetesSettings(
        kubeconfig=kube_cluster.kubeconfig, drift_interval=HOUR, observe_interval=HOUR, rollout_interval=0.2,
        follow_logs=False))
    loop = Loop()
    loop.run(runtime.start(host, None))
    try:
        yield Kube(kube_cluster, runtime, host, loop)
    finally:
        loop.run(runtime.apply(state(plane=PLANE)))  # the cell and its gateways pruned (the cluster is shared)
        loop.run(runtime.stop())
        loop.run(runtime.close())
        loop.close()


def service(release: str, greeting: str, id: str = ID, project: str = "fast") -> dict[str, object]:
    return deployment_wire(id=id, project=project, environment="rollouts", release=release,
                           artifact={"digest": "sha256:" + "0" * 64, "image": IMAGE},
                           env=[{"name": "GREETING", "value": greeting}])


def cells(release: str, greeting: str) -> DesiredState:
    return state(service(release, greeting), service("o1", "other", OTHER, "other"), plane=PLANE, revision=release)


def settled(kube: Kube) -> None:
    """Until the runtime no longer follows a rollout (its last pass saw it end)."""
    kube.cluster.wait_for("the rollout no longer followed", lambda: not kube.runtime.rollouts or None, 90)


def test_a_first_deploy_and_a_new_release_are_reported_ready_by_the_fast_passes_alone(kube: Kube) -> None:
    for release, greeting in (("r1", "hello"), ("r2", "hi")):
        passes = kube.runtime.rollout_passes
        kube.apply(cells(release, greeting))
        assert ID in kube.runtime.rollouts
        kube.wait_report(ID, lambda r, release=release: r.state == "ready" and r.release == release,
                         f"release {release} ready with an observation period of an hour")
        assert kube.runtime.rollout_passes > passes  # seen by the passes the apply started, not the hourly one
        settled(kube)
        assert kube.runtime.observe_delay == HOUR  # and back to the normal period once it is ready


def test_a_reconcile_that_changes_nothing_does_not_observe_faster(kube: Kube) -> None:
    settled(kube)
    passes, sent = kube.runtime.observe_passes, kube.runtime.applier.requests
    kube.apply(cells("r2", "hi"))  # the same state again
    assert kube.runtime.applier.requests == sent  # nothing written
    assert kube.runtime.rollouts == {}
    time.sleep(1)  # (a pass the apply had started would have run by now: an awaited wake-up, not a timing bound)
    assert kube.runtime.observe_passes == passes
    assert kube.runtime.observe_delay == HOUR


def test_a_rollout_pass_lists_the_rolling_cells_namespace_only_and_keeps_the_others_observation(kube: Kube) -> None:
    settled(kube)
    partial, passes = kube.runtime.partial_passes, kube.runtime.rollout_passes
    kube.apply(cells("r3", "hey"))
    assert set(kube.runtime.rollouts) == {ID}
    kube.wait_report(ID, lambda r: r.state == "ready" and r.release == "r3", "release r3 ready")
    settled(kube)
    assert kube.runtime.partial_passes - partial == kube.runtime.rollout_passes - passes > 0
    other = kube.report(OTHER)
    assert other is not None and (other.state, other.release) == ("ready", "o1")
