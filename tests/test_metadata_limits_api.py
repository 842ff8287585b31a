"""Labels and annotations are bounded on every way in, over real HTTP: a resource's own route, apply, and a
component import (was: a project with 100,000 annotations, 11 MB, was stored)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from liveserver import LiveServer, doc

ORG = "/organizations/default"
MANY = {f"note-{i}": "v" * 100 for i in range(100_000)}  # 11 MB of annotations, under the 16 MiB body limit


@pytest.fixture(scope="module")
def live_server(shared_live_server: LiveServer) -> LiveServer:
    """This module's names are its own: it shares the session's control plane."""
    return shared_live_server


def _refused(r: httpx.Response, field: str) -> dict[str, Any]:
    assert r.status_code == 422, r.text[:500]
    error = r.json()["error"]
    assert error["code"] == "invalid" and field in [d["field"] for d in error["details"]], error
    assert len(r.content) < 5000  # the error does not echo what it refuses
    return error


def test_metadata_over_the_limits_is_refused_on_every_way_in(live_server: LiveServer) -> None:
    c = live_server.client()
    _refused(c.post(f"{ORG}/projects", json={"metadata": {"name": "limits-noted", "annotations": MANY}}),
             "metadata.annotations")
    assert c.get(f"{ORG}/projects/limits-noted").status_code == 404
    _refused(c.post("/apply", json={"documents": [
        doc("Project", "limits-applied", organization="default"),
        {**doc("Component", "api", organization="default", project="limits-applied"),
         "metadata": {"name": "api", "organization": "default", "project": "limits-applied", "annotations": MANY}}]}),
        "documents[1].metadata.annotations")
    assert c.get(f"{ORG}/projects/limits-applied").status_code == 404  # apply is all or nothing

    assert c.post(f"{ORG}/projects", json={"metadata": {"name": "limits-labelled"}}).status_code == 201
    error = _refused(c.post(f"{ORG}/projects/limits-labelled/component-imports", json={
        "name": "imported", "source": {"repository": "https://example.com/x.git"}, "files": {},
        "labels": {"n" * 64: "v"}}), "metadata.labels")
    assert "at most 63" in error["details"][0]["problem"]
    # an update is held to the same rule
    r = c.put(f"{ORG}/projects/limits-labelled",
              json={"metadata": {"name": "limits-labelled", "annotations": {"a": "x" * 300_000}}})
    _refused(r, "metadata.annotations")
    assert c.get(f"{ORG}/projects/limits-labelled").json()["metadata"].get("annotations") is None
    assert "Traceback" not in live_server.log()
