"""A Workload's env entries and files read their ``value`` or ``valueFrom`` the same way (one function): a secret
reference makes a secret without a value and a warning naming the command that sets it, older releases' ``path``
warns, ``value`` with ``valueFrom`` is refused. In-process, through ``translate``."""

from __future__ import annotations

from typing import Any

from cellplane.errors import FieldProblem
from cellplane.openchoreo import translate
from openchoreokit import component, workload

SECRET = {"secretKeyRef": {"name": "gh", "key": "token"}}
COMPONENT = component()


def values(env: list[Any], files: list[Any]) -> dict[str, Any]:
    return workload(container={"env": env, "files": files})


def test_env_entries_and_files_take_a_secret_reference_or_a_repository_path_alike() -> None:
    t = translate([COMPONENT, values(
        env=[{"key": "TOKEN", "valueFrom": SECRET}, {"key": "OLD", "valueFrom": {"path": "conf/old"}},
             {"key": "PLAIN", "value": 7}],
        files=[{"key": "token.txt", "mountPath": "/etc/app", "valueFrom": SECRET},
               {"key": "app.conf", "mountPath": "/etc/app", "valueFrom": {"path": "conf/app.conf"}},
               {"key": "inline.conf", "mountPath": "/etc/app/", "value": "a=1"}])])
    assert t.problems == []
    [(_, mapped)] = t.documents
    assert mapped["spec"]["configuration"] == {
        "env": [{"name": "TOKEN", "secret": True}, {"name": "OLD"}, {"name": "PLAIN", "value": "7"}],
        "files": [{"name": "token-txt", "mountPath": "/etc/app/token.txt", "secret": True},
                  {"name": "app-conf", "mountPath": "/etc/app/app.conf"},
                  {"name": "inline-conf", "mountPath": "/etc/app/inline.conf", "content": "a=1"}]}
    warnings = [w for w in t.warnings(0) if "valueFrom" in w]
    prefix = "Workload 'orders-workload' spec.container."
    assert warnings == [
        f"{prefix}env[0].valueFrom.secretKeyRef: the value is in secret 'gh' key 'token', which is not imported: "
        "set it with `cellplane config set COMPONENT TOKEN=... --secret`",
        f"{prefix}env[1].valueFrom.path: the value read from the repository at build time has no equivalent; give "
        "it inline, or set it with `cellplane config set`",
        f"{prefix}files[0].valueFrom.secretKeyRef: the content is in secret 'gh' key 'token', which is not imported: "
        "set it with `cellplane config set COMPONENT file:token-txt=... --secret`",
        f"{prefix}files[1].valueFrom.path: the content read from the repository at build time has no equivalent; "
        "give it inline, or set it with `cellplane config set`"]


def test_value_with_value_from_is_refused_in_env_entries_and_files_alike() -> None:
    t = translate([COMPONENT, values(env=[{"key": "A", "value": "x", "valueFrom": SECRET}],
                                       files=[{"key": "b", "mountPath": "/m", "value": "y", "valueFrom": SECRET}])])
    assert t.problems == [
        FieldProblem("documents[1].spec.container.env[0].valueFrom", "value and valueFrom are mutually exclusive"),
        FieldProblem("documents[1].spec.container.files[0].valueFrom", "value and valueFrom are mutually exclusive")]
