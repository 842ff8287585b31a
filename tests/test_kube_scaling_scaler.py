"""The agent's scaling decisions on Kubernetes (cellplane.kubernetes.scaler), pure logic over an injected clock:
only the idle -> zero decision of the local scaler's Autoscaler is the agent's (the HPA owns 1..N), the HPA's gauges
per Deployment, the cold starts kept for the metric points. test_kube_scaling.py runs it against the test cluster."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cellplane.contract import DesiredState
from cellplane.kubernetes.scaler import ClusterScaler
from desiredkit import deployment_wire, state_wire


@dataclass
class Seen:
    inflight: int = 0
    requests: int = 0
    cold_starts: int = 0
    cold_start_seconds: float = 0.0


def scaling(**fields: Any) -> dict[str, Any]:
    return {"minReplicas": 0, "maxReplicas": 3, "targetConcurrency": 10, "idleSeconds": 300,
            "scaleDownDelaySeconds": 30, **fields}


def state(**scaling_fields: Any) -> DesiredState:
    wire = [deployment_wire(id="dep_orders", project="shop", component="orders", scaling=scaling(**scaling_fields)),
            deployment_wire(id="dep_fixed", project="shop", component="fixed", replicas=2)]
    return DesiredState.from_wire(state_wire(wire))


def test_an_idle_deployment_goes_to_zero_after_its_idle_period_and_not_before() -> None:
    scaler, desired = ClusterScaler(), state(idleSeconds=60)
    assert scaler.tick(desired, {"dep_orders": Seen(inflight=3, requests=5)}, 0.0, lambda d: 1) == []
    assert scaler.tick(desired, {"dep_orders": Seen()}, 59.0, lambda d: 1) == []
    (zero,) = scaler.tick(desired, {}, 60.5, lambda d: 1)
    assert zero[0].id == "dep_orders" and (zero[1].desired, zero[1].reason) == (0, "idle for 60 s")
    assert scaler.tick(desired, {}, 61.0, lambda d: 0) == []  # at zero already: nothing to do


def test_a_woken_deployment_and_one_with_a_request_in_flight_are_not_idle() -> None:
    scaler, desired = ClusterScaler(), state(idleSeconds=10)
    scaler.tick(desired, {}, 0.0, lambda d: 0)
    scaler.woke("dep_orders", 9.0)
    assert scaler.tick(desired, {}, 12.0, lambda d: 1) == []
    assert scaler.tick(desired, {"dep_orders": Seen(inflight=1)}, 30.0, lambda d: 1) == []  # a WebSocket held open
    assert scaler.tick(desired, {"dep_orders": Seen(inflight=1)}, 60.0, lambda d: 1) == []
    assert [d.id for d, _ in scaler.tick(desired, {}, 71.0, lambda d: 1)] == ["dep_orders"]


def test_min_one_never_goes_to_zero_and_load_is_left_to_the_hpa() -> None:
    scaler, desired = ClusterScaler(), state(minReplicas=1, idleSeconds=1)
    for t in range(10):
        assert scaler.tick(desired, {"dep_orders": Seen(inflight=90 if t < 3 else 0)}, float(t), lambda d: 1) == []
    assert "dep_orders" not in scaler.autoscalers


def test_the_hpas_gauges_average_the_load_per_deployment_and_name_its_namespace_and_deployment() -> None:
    scaler, desired = ClusterScaler(), state()
    for t, inflight in ((0.0, 10), (1.0, 20), (2.0, 30)):
        scaler.tick(desired, {"dep_orders": Seen(inflight=inflight, requests=8)}, t, lambda d: 1)
    text = scaler.prometheus(desired, 2.0)
    labels = 'namespace="acme--shop--development",deployment="orders--v1"'
    assert f"cellplane_requests_in_flight{{{labels}}} 20\n" in text
    assert f"cellplane_requests_per_second{{{labels}}} 8\n" in text
    assert "fixed" not in text and "# TYPE cellplane_requests_in_flight gauge" in text


def test_cold_starts_are_summed_until_taken() -> None:
    scaler, desired = ClusterScaler(), state()
    scaler.tick(desired, {"dep_orders": Seen(cold_starts=1, cold_start_seconds=0.25)}, 0.0, lambda d: 0)
    scaler.tick(desired, {"dep_orders": Seen(cold_starts=2, cold_start_seconds=0.5)}, 0.5, lambda d: 1)
    assert scaler.take_cold() == {"dep_orders": (3, 0.75)}
    assert scaler.take_cold() == {}
