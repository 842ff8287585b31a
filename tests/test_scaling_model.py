"""spec.scaling: validation with field paths, the defaults per environment, overrides, and how it resolves."""

from __future__ import annotations

from typing import Any

import pytest

from cellplane import API_VERSION
from cellplane.errors import InvalidError
from cellplane.model import parse_document
from cellplane.model.scaling import Resolved, resolve

HTTP = [{"name": "api", "port": 8080}]
DEFAULTS = Resolved(minReplicas=0, maxReplicas=1, targetConcurrency=10.0, targetRps=None, idleSeconds=300.0,
                    scaleDownDelaySeconds=30.0)


def parsed(spec: dict[str, Any]) -> dict[str, Any]:
    """The spec as stored (validated and dumped, as ``apply`` stores it)."""
    doc = parse_document({"apiVersion": API_VERSION, "kind": "Component",
                          "metadata": {"name": "api", "project": "shop"}, "spec": spec})
    return doc.spec_dict()


def problems(spec: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(InvalidError) as caught:
        parsed(spec)
    return {p.field: p.problem for p in caught.value.details}


def test_a_service_with_http_endpoints_scales_to_zero_by_default_outside_production_only() -> None:
    spec = parsed({"endpoints": HTTP})
    assert resolve(spec, "development", production=False) == DEFAULTS
    assert resolve(spec, "staging", production=False) == DEFAULTS
    assert resolve(spec, "production", production=True) is None


def test_web_apps_and_webhooks_get_the_default_too_but_not_workers_tasks_or_proxies() -> None:
    for kind in ("web-app", "webhook"):
        assert resolve(parsed({"type": kind, "endpoints": HTTP}), "development", False) == DEFAULTS
    assert resolve(parsed({"type": "worker"}), "development", False) is None
    assert resolve(parsed({"type": "manual-task"}), "development", False) is None
    assert resolve(parsed({"type": "scheduled-task", "schedule": {"cron": "* * * * *"}}), "development", False) is None
    assert resolve(parsed({"type": "api-proxy", "proxy": {"upstream": "https://x.io"}}), "development", False) is None


def test_fixed_replicas_other_than_one_and_components_the_gateway_cannot_wake_keep_fixed_replicas() -> None:
    assert resolve(parsed({"endpoints": HTTP, "replicas": 3}), "development", False) is None
    assert resolve(parsed({}), "development", False) is None  # no endpoint: nothing would wake it
    assert resolve(parsed({"endpoints": [{"name": "rpc", "port": 9090, "type": "gRPC"}]}), "development",
                   False) is None
    assert resolve(parsed({"endpoints": [*HTTP, {"name": "raw", "port": 9000, "type": "TCP"}]}), "development",
                   False) is None


def test_given_scaling_fills_its_defaults_with_min_zero_outside_production_and_one_in_production() -> None:
    spec = parsed({"endpoints": HTTP, "scaling": {"maxReplicas": 4, "targetRps": 50}})
    assert resolve(spec, "development", False) == Resolved(0, 4, 10.0, 50.0, 300.0, 30.0)
    assert resolve(spec, "production", True) == Resolved(1, 4, 10.0, 50.0, 300.0, 30.0)
    worker = parsed({"type": "worker", "scaling": {"maxReplicas": 3}})
    assert resolve(worker, "development", False) == Resolved(1, 3, 10.0, None, 300.0, 30.0)
    only_min = parsed({"endpoints": HTTP, "scaling": {"minReplicas": 2}})
    assert resolve(only_min, "development", False) == Resolved(2, 2, 10.0, None, 300.0, 30.0)


def test_environment_overrides_merge_over_the_component_fields() -> None:
    spec = parsed({"endpoints": HTTP, "scaling": {
        "maxReplicas": 3, "targetConcurrency": 20, "idleSeconds": 60,
        "environments": {"production": {"minReplicas": 2, "maxReplicas": 10}, "staging": {"fixed": True}}}})
    assert resolve(spec, "production", True) == Resolved(2, 10, 20.0, None, 60.0, 30.0)
    assert resolve(spec, "development", False) == Resolved(0, 3, 20.0, None, 60.0, 30.0)
    assert resolve(spec, "staging", False) is None
    on_in_one = parsed({"endpoints": HTTP, "scaling": {"fixed": True, "environments": {
        "development": {"fixed": False, "maxReplicas": 2}}}})
    assert resolve(on_in_one, "development", False) == Resolved(0, 2, 10.0, None, 300.0, 30.0)
    assert resolve(on_in_one, "staging", False) is None
    # an override that gives settings without saying fixed scales there: the environment's settings win
    said_nothing = parsed({"endpoints": HTTP, "scaling": {"fixed": True, "environments": {
        "staging": {"maxReplicas": 4}, "production": {"fixed": True, "maxReplicas": 4}}}})
    assert resolve(said_nothing, "staging", False) == Resolved(0, 4, 10.0, None, 300.0, 30.0)
    assert resolve(said_nothing, "production", True) is None
    assert resolve(said_nothing, "development", False) is None


def test_the_document_keeps_what_was_given_and_resolution_reads_it_back() -> None:
    spec = parsed({"endpoints": HTTP, "scaling": {"minReplicas": 1, "environments": {"dev": {"idleSeconds": 5}}}})
    assert spec["scaling"] == {"minReplicas": 1, "environments": {"dev": {"idleSeconds": 5.0}}}


def test_scaling_on_tasks_and_api_proxies_is_refused_at_its_path() -> None:
    found = problems({"type": "manual-task", "scaling": {"maxReplicas": 2}})
    assert found == {"spec.scaling": "a manual-task runs to completion on demand and takes no scaling"}
    found = problems({"type": "api-proxy", "proxy": {"upstream": "https://x.io"}, "scaling": {}})
    assert found == {"spec.scaling": "a api-proxy runs no replicas of its own and takes no scaling"}


def test_min_replicas_zero_on_a_component_nothing_can_wake_is_refused_with_why() -> None:
    found = problems({"type": "worker", "scaling": {"minReplicas": 0}})
    assert found == {"spec.scaling.minReplicas": "0 is not allowed: nothing would wake it: a worker is not called "
                                                 "through the gateway"}
    found = problems({"endpoints": [{"name": "rpc", "port": 9090, "type": "gRPC"}],
                      "scaling": {"environments": {"development": {"minReplicas": 0}}}})
    assert list(found) == ["spec.scaling.environments.development.minReplicas"]
    assert "endpoint 'rpc' is gRPC; the gateway wakes only HTTP endpoints" in found[
        "spec.scaling.environments.development.minReplicas"]
    assert list(problems({"scaling": {"minReplicas": 0}})) == ["spec.scaling.minReplicas"]  # no endpoint


def test_min_above_max_is_refused_where_it_is_written_also_after_merging_an_override() -> None:
    assert list(problems({"endpoints": HTTP, "scaling": {"minReplicas": 3, "maxReplicas": 2}})) == [
        "spec.scaling.minReplicas"]
    found = problems({"endpoints": HTTP, "scaling": {"maxReplicas": 2, "environments": {
        "production": {"minReplicas": 4}, "staging": {"maxReplicas": 5}}}})
    assert found == {"spec.scaling.environments.production.minReplicas":
                     "minReplicas (4) must not exceed maxReplicas (2) in this environment"}
    found = problems({"endpoints": HTTP, "scaling": {"minReplicas": 2, "environments": {"dev": {"maxReplicas": 1}}}})
    assert list(found) == ["spec.scaling.environments.dev.maxReplicas"]


def test_single_field_bounds_and_unknown_fields_are_reported_together() -> None:
    found = problems({"endpoints": HTTP, "scaling": {
        "minReplicas": -1, "maxReplicas": 0, "targetConcurrency": 0, "targetRps": -5, "idleSeconds": -1,
        "scaleDownDelaySeconds": 4000, "colour": "red", "environments": {"Bad_Env": {}, "dev": {"maxReplicas": 101}}}})
    assert set(found) == {"spec.scaling.minReplicas", "spec.scaling.maxReplicas", "spec.scaling.targetConcurrency",
                          "spec.scaling.targetRps", "spec.scaling.idleSeconds", "spec.scaling.scaleDownDelaySeconds",
                          "spec.scaling.colour", "spec.scaling.environments.Bad_Env[key]",
                          "spec.scaling.environments.dev.maxReplicas"}


def test_an_override_of_one_environment_leaves_the_others_as_without_scaling() -> None:
    spec = parsed({"endpoints": HTTP, "replicas": 1, "scaling": {"environments": {"staging": {"maxReplicas": 4}}}})
    assert resolve(spec, "staging", False) == Resolved(0, 4, 10.0, None, 300.0, 30.0)
    assert resolve(spec, "development", False) == DEFAULTS
    assert resolve(spec, "production", True) is None
    three = parsed({"endpoints": HTTP, "replicas": 3, "scaling": {"environments": {"staging": {"fixed": True}}}})
    assert resolve(three, "development", False) is None and resolve(three, "staging", False) is None
