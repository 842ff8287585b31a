"""Hostile YAML aliases: ``cellplane apply -f`` (a real subprocess, against a real control plane) and the loader
it shares with the control plane's Choreo importer (``cellplane.yamlload``).

The CLI runs with its address space capped (``RLIMIT_AS``) and a timeout, so that a loader that expands a
"billion laughs" fails the test with a MemoryError or a timeout instead of eating the machine.
"""

from __future__ import annotations

import os
import resource
import subprocess
from pathlib import Path

import pytest
import yaml

from cellplane import yamlload
from liveserver import CELLPLANE, LiveServer, fails

MEMORY_CAP = 512 << 20  # address space: a few times what the CLI needs, a fraction of what expanding the bomb takes
TIMEOUT = 20

# Nine levels of nine aliases: 9**9 (387 million) strings once expanded, a few hundred objects as loaded.
LAUGHS = "".join(
    [f"{chr(97)}: &{chr(97)} [{', '.join(['lol'] * 9)}]\n"]
    + [f"{chr(97 + i)}: &{chr(97 + i)} [{', '.join([f'*{chr(96 + i)}'] * 9)}]\n" for i in range(1, 9)])
BOMB = ("apiVersion: cellplane.dev/v1alpha1\nkind: Project\nmetadata:\n  name: laughs\nspec:\n  description: x\n"
        "---\n" + LAUGHS)
SELF_REFERENCE = "apiVersion: cellplane.dev/v1alpha1\nkind: Project\nmetadata: &m\n  name: loop\n  labels: *m\n"


@pytest.fixture(scope="module")
def live_server(shared_live_server: LiveServer) -> LiveServer:
    """This module's names are its own: it shares the session's control plane."""
    return shared_live_server


def _capped() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


def apply_capped(server: LiveServer, path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CELLPLANE_")}
    env |= {"CELLPLANE_SERVER": server.url, "CELLPLANE_TOKEN": server.admin_token,
            "CELLPLANE_CONFIG": os.devnull + ".cellplane-test-none"}
    return subprocess.run([str(CELLPLANE), "apply", "-f", str(path)], capture_output=True, text=True, env=env,
                          timeout=TIMEOUT, preexec_fn=_capped, check=False)


def test_apply_refuses_a_billion_laughs_with_one_line_naming_the_file(live_server: LiveServer,
                                                                       tmp_path: Path) -> None:
    path = tmp_path / "laughs.yaml"
    path.write_text(BOMB)
    line = fails(apply_capped(live_server, path))
    assert line.startswith(f"error: {path}: line 13, column 8: ")
    assert "not valid YAML: aliases expand to more than 100000 values" in line
    assert live_server.client().get("/organizations/default/projects/laughs").status_code == 404  # none applied


def test_apply_refuses_a_self_referencing_alias_with_one_line_naming_the_file(live_server: LiveServer,
                                                                              tmp_path: Path) -> None:
    path = tmp_path / "loop.yaml"
    path.write_text(SELF_REFERENCE)
    line = fails(apply_capped(live_server, path))
    assert line == (f"error: {path}: line 5, column 11: not valid YAML: alias *m refers to a value that contains it "
                    "(a self-referencing alias)")


def test_the_choreo_importer_refuses_an_alias_bomb_at_its_file_and_line(live_server: LiveServer) -> None:
    admin = live_server.client()
    assert admin.post("/organizations/default/projects", json={"metadata": {"name": "aliases"}}).status_code == 201
    body = {"name": "laughs", "source": {"repository": "https://example.invalid/r.git"},
            "files": {".choreo/component.yaml": "schemaVersion: '1.2'\n" + LAUGHS}}
    r = admin.post("/organizations/default/projects/aliases/component-imports", json=body)
    assert r.status_code == 422, r.text
    [detail] = r.json()["error"]["details"]
    assert detail["field"] == ".choreo/component.yaml: line 7"
    assert detail["problem"].startswith("aliases expand to more than 100000 values")


@pytest.mark.parametrize("text", [
    "a: &x {b: 1}\nc: *x\nd: [*x, *x]\n",  # shared blocks, reused
    "base: &base {port: 80, type: REST}\nendpoints:\n- <<: *base\n  name: a\n- <<: *base\n  name: b\n",  # merge keys
])
def test_ordinary_anchors_and_merge_keys_load_as_before(text: str) -> None:
    assert yamlload.load(text) == yaml.safe_load(text)
    assert yamlload.load_all(text + "---\n" + text) == list(yaml.safe_load_all(text + "---\n" + text))


def test_aliases_may_expand_up_to_the_bound_and_no_further() -> None:
    def aliases(count: int) -> str:  # each alias stands for 1000 values: a list of 999 numbers
        return f"a: &a [{', '.join(['1'] * 999)}]\nb: [{', '.join(['*a'] * count)}]\n"

    assert len(yamlload.load(aliases(100))["b"]) == 100
    with pytest.raises(yaml.MarkedYAMLError, match="aliases expand to more than 100000 values") as e:
        yamlload.load(aliases(101))
    assert e.value.problem_mark is not None and e.value.problem_mark.line == 1


def test_deep_nesting_and_unreadable_values_are_yaml_errors() -> None:
    with pytest.raises(yaml.MarkedYAMLError, match="nested too deeply"):
        yamlload.load("[" * 100_000)
    with pytest.raises(yaml.MarkedYAMLError, match="a value cannot be read"):
        yamlload.load("when: 2020-13-45\n")
