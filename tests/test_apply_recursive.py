"""``cellplane apply -f DIR -R`` (kubectl's flag): every .yaml, .yml and .json file of the tree, in a stable order
(by path, as kubectl walks), all of them or none; Cellplane's and OpenChoreo's documents are checked together before
anything is stored, so a bad field anywhere refuses the set naming its file and field. The real CLI against the
session's shared control plane."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from liveserver import LiveServer, doc, fails, ok, run_cli
from openchoreokit import oc


def oc_project(name: str, **spec: Any) -> dict[str, Any]:
    return oc("Project", name, spec, namespace="default")


def write(path: Path, *docs: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(docs[0]) if path.suffix == ".json" else yaml.safe_dump_all(docs))


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A team's repository of manifests: files at several depths, in an order that differs from the kinds'."""
    root = tmp_path / "manifests"
    write(root / "b-project.yaml", doc("Project", "rec-b", organization="default"))
    write(root / "a" / "z-component.yml", doc("Component", "web", {"type": "web-app"}, organization="default",
                                              project="rec-b"))
    write(root / "a" / "deeper" / "oc.yaml", oc_project("rec-oc"))
    write(root / "c" / "project.json", doc("Project", "rec-c", organization="default"))
    (root / "c" / "README.md").write_text("not a manifest\n")
    return root


def test_recursive_applies_the_whole_tree_in_path_order(live_server: LiveServer, tree: Path) -> None:
    dry = ok(run_cli(live_server, "apply", "-f", str(tree), "-R", "--dry-run", "-o", "json"))
    results = json.loads(dry.stdout)["results"]
    by_document = sorted((r["document"], r["name"]) for r in results)
    # a/deeper/oc.yaml, a/z-component.yml, b-project.yaml, c/project.json
    assert by_document == [(0, "rec-oc"), (1, "web"), (2, "rec-b"), (3, "rec-c")]
    applied = ok(run_cli(live_server, "apply", "-f", str(tree), "--recursive"))
    assert sorted(applied.stdout.splitlines()) == ["component/web created", "project/rec-b created",
                                                   "project/rec-c created", "project/rec-oc created"]
    again = ok(run_cli(live_server, "apply", "-f", str(tree), "-R"))
    assert all(line.endswith(" unchanged") for line in again.stdout.splitlines()), again.stdout


def test_without_recursive_only_the_directorys_own_files_are_read(live_server: LiveServer, tree: Path) -> None:
    result = ok(run_cli(live_server, "apply", "-f", str(tree), "--dry-run"))
    [line] = result.stdout.splitlines()  # created, or unchanged after the test above
    assert line.startswith("project/rec-b ") and line.endswith(" (dry run)")
    line = fails(run_cli(live_server, "apply", "-f", str(tree.parent)))  # holds manifests/ only
    assert line == f"error: {tree.parent}: no .yaml, .yml or .json files in this directory (its subdirectories " \
                   "have some: add -R)"


def test_a_bad_field_anywhere_in_the_tree_refuses_the_whole_set_naming_file_and_field(live_server: LiveServer,
                                                                                       tmp_path: Path) -> None:
    root = tmp_path / "bad"
    write(root / "1-fine.yaml", doc("Project", "rec-never", organization="default"))
    write(root / "deep" / "mine.yaml", doc("Component", "api", {"type": "servce"}, organization="default",
                                           project="rec-never"))
    write(root / "deep" / "er" / "theirs.yaml", oc_project("rec-never-oc", deploymentPipelinRef={"name": "x"}))
    result = run_cli(live_server, "apply", "-f", str(root), "-R")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stdout == ""
    message = result.stderr
    assert f"{root / 'deep' / 'er' / 'theirs.yaml'}: spec.deploymentPipelinRef" in message
    assert f"{root / 'deep' / 'mine.yaml'}: spec.type" in message
    assert message.index("theirs.yaml") < message.index("mine.yaml")  # the tree's order: deep/er/ before deep/mine
    c = live_server.client()
    for name in ("rec-never", "rec-never-oc"):
        assert c.get(f"/organizations/default/projects/{name}").status_code == 404
