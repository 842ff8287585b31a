"""The Gateway API's standard CRDs (``sigs.k8s.io/gateway-api``, pinned), for validating rendered Gateways and
HTTPRoutes offline: kubernetes-validate knows only the built-in kinds.

The CRDs come in the Go module, fetched through the Go module proxy with ``go mod download`` into the Go module
cache (seconds the first time, none after). Each kind's ``openAPIV3Schema`` becomes a JSON Schema made strict
the way kubernetes-validate's strict schemas are (an object with declared properties takes no others). What it
cannot check: the CRDs' CEL rules (``x-kubernetes-validations``), which only an API server evaluates.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

# One pin for the whole project: the version the test cluster installs (tools/kube/versions.env).
_PINS = Path(__file__).resolve().parent.parent / "tools" / "kube" / "versions.env"
VERSION = next(line.split("=", 1)[1].strip() for line in _PINS.read_text().splitlines()
               if line.startswith("GATEWAY_API_VERSION="))
MODULE = "sigs.k8s.io/gateway-api"
CRDS = {"Gateway": "gateway.networking.k8s.io_gateways.yaml", "HTTPRoute": "gateway.networking.k8s.io_httproutes.yaml"}


def _go() -> str | None:
    return shutil.which("go") or next((p for p in ("/usr/local/go/bin/go",) if os.access(p, os.X_OK)), None)


@functools.cache
def module_dir() -> Path:
    """The module's directory in the Go module cache (downloaded once). Fails in CI without Go, else skips."""
    go = _go()
    if go is None:
        if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
            pytest.fail("Go is not installed: the Gateway API CRDs come from the Go module proxy")
        pytest.skip("Go is not installed: the Gateway API CRDs come from the Go module proxy")
    done = subprocess.run([go, "mod", "download", "-json", f"{MODULE}@{VERSION}"], capture_output=True, text=True,
                          timeout=600, check=False, env={**os.environ, "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=mod"},
                          cwd="/")
    info = json.loads(done.stdout or "{}")
    if not info.get("Dir"):
        pytest.fail(f"go mod download {MODULE}@{VERSION} failed: {info.get('Error') or done.stderr.strip()}")
    return Path(info["Dir"])


def _strict(schema: Any) -> Any:
    """The schema with ``additionalProperties: false`` on every object that declares its properties (and does not
    say it keeps unknown fields)."""
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _strict(v) for k, v in schema.items()}
    if (schema.get("type") == "object" and isinstance(schema.get("properties"), dict)
            and "additionalProperties" not in schema and not schema.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


@functools.cache
def validator(kind: str) -> jsonschema.protocols.Validator:
    crd = yaml.safe_load((module_dir() / "config" / "crd" / "standard" / CRDS[kind]).read_text())
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
    schema = _strict(version["schema"]["openAPIV3Schema"])
    return jsonschema.Draft7Validator(schema)


def validate(obj: dict[str, Any]) -> None:
    """Raises ``jsonschema.ValidationError`` unless ``obj`` is a valid v1 Gateway or HTTPRoute."""
    assert obj["apiVersion"] == "gateway.networking.k8s.io/v1", obj["apiVersion"]
    validator(obj["kind"]).validate(obj)
