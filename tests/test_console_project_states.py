"""What the project page computes from the API's answers before rendering (console/pages_project.py): the order of
the environments and the deployments shown per component and environment."""

from __future__ import annotations

from cellplane.console.pages_project import ordered_environments, states


def _env(name: str) -> dict[str, object]:
    return {"metadata": {"name": name}, "spec": {}}


def test_environments_follow_the_pipeline_then_the_others_by_name() -> None:
    pipeline = {"spec": {"promotionPaths": [
        {"source": "development", "targets": [{"name": "staging"}]},
        {"source": "staging", "targets": [{"name": "production"}, {"name": "gone"}]}]}}
    envs = [_env(n) for n in ("production", "sandbox", "development", "staging", "a-lab")]
    assert ordered_environments(envs, pipeline) == ["development", "staging", "production", "a-lab", "sandbox"]
    assert ordered_environments(envs, None) == ["a-lab", "development", "production", "sandbox", "staging"]


def test_a_superseded_deployment_shows_only_when_nothing_else_is_there_and_tracks_are_sorted() -> None:
    deployed = [
        {"component": "api", "environment": "development", "state": "superseded", "track": "main"},
        {"component": "api", "environment": "development", "state": "ready", "track": "v2"},
        {"component": "api", "environment": "development", "state": "failed", "track": "main", "message": "exit 1"},
        {"component": "api", "environment": "staging", "state": "superseded", "track": "main"},
    ]
    shown = states(deployed)
    assert [(d["track"], d["state"]) for d in shown[("api", "development")]] == [("main", "failed"), ("v2", "ready")]
    assert shown[("api", "development")][0]["message"] == "exit 1"
    assert [d["state"] for d in shown[("api", "staging")]] == ["superseded"]
    assert ("api", "production") not in shown
