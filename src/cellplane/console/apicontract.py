"""An endpoint's OpenAPI contract, for the Test tab: read from the deployed build's artifact and laid out for a page.

The contract is a file of the component's source (``spec.endpoints[].contract``, Choreo's ``schemaFilePath``); a
build keeps the source's files under ``files/`` in the artifact (``.tar.gz``), so the file is read from there:
``from_artifact`` scans the archive once for that member (at most ``MAX_CONTRACT`` bytes; JSON or YAML) and
``operations`` flattens its paths into operations grouped by tag, with local ``$ref``s resolved (a few levels:
enough to show a schema, never a loop). Pure functions; the page caches the result per artifact digest and path
(an artifact never changes), so the cost (one read of the artifact, tens of milliseconds for a few MB) is paid once
per process.
"""

from __future__ import annotations

import io
import json
import posixpath
import tarfile
from dataclasses import dataclass, field
from typing import Any

import yaml

MAX_CONTRACT = 2_000_000  # bytes
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
REF_DEPTH = 4


class ContractProblem(Exception):
    """Why the contract cannot be shown (one line, naming the file relative to the source)."""


def member_name(path: str) -> str:
    """The archive member of a source-relative path; refuses paths leaving the source."""
    clean = posixpath.normpath(path.strip().lstrip("./") or ".")
    if clean.startswith("..") or posixpath.isabs(clean) or clean == ".":
        raise ContractProblem(f"contract path '{path}' is outside the component's source")
    return "files/" + clean


def from_artifact(artifact: bytes, path: str) -> dict[str, Any]:
    """The parsed contract at ``path`` (relative to the component's source) in an artifact's bytes."""
    name = member_name(path)
    try:
        with tarfile.open(fileobj=io.BytesIO(artifact), mode="r:gz") as tar:
            try:
                info = tar.getmember(name)
            except KeyError:
                raise ContractProblem(f"{path} is not in the build's artifact (a build keeps the source's files "
                                      "only for interpreted runtimes: commit the file next to the code)") from None
            if not info.isfile() or info.size > MAX_CONTRACT:
                raise ContractProblem(f"{path} is not a file of at most {MAX_CONTRACT // 1_000_000} MB")
            handle = tar.extractfile(info)
            raw = handle.read() if handle else b""
    except (tarfile.TarError, OSError, EOFError) as e:
        raise ContractProblem(f"the build's artifact cannot be read: {e}") from None
    return parse(raw, path)


def parse(raw: bytes, path: str) -> dict[str, Any]:
    try:
        doc = json.loads(raw) if path.endswith(".json") else yaml.safe_load(raw)
    except (ValueError, yaml.YAMLError) as e:
        raise ContractProblem(f"{path} is not valid {'JSON' if path.endswith('.json') else 'YAML'}: "
                              f"{str(e).splitlines()[0]}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("paths"), dict):
        raise ContractProblem(f"{path} is not an OpenAPI document (no 'paths' object)")
    return doc


def resolve(doc: dict[str, Any], node: Any, depth: int = REF_DEPTH) -> Any:
    """``node`` with local ``$ref``s (``#/...``) replaced by what they point at, ``depth`` levels deep; deeper or
    foreign refs stay as they are."""
    if isinstance(node, list):
        return [resolve(doc, n, depth) for n in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str):
        if depth <= 0 or not ref.startswith("#/"):
            return node
        target: Any = doc
        for part in ref[2:].split("/"):
            target = target.get(part.replace("~1", "/").replace("~0", "~")) if isinstance(target, dict) else None
        return resolve(doc, target, depth - 1) if target is not None else node
    return {k: resolve(doc, v, depth) for k, v in node.items()}


@dataclass
class Parameter:
    name: str
    where: str  # path, query, header, cookie
    required: bool
    description: str
    type: str


@dataclass
class Operation:
    key: str  # unique on the page: method + path
    method: str
    path: str
    summary: str
    parameters: list[Parameter] = field(default_factory=list)
    body_type: str | None = None
    body_schema: str | None = None
    body_example: str = ""
    responses: list[tuple[str, str]] = field(default_factory=list)


def _type(schema: Any) -> str:
    if not isinstance(schema, dict):
        return ""
    kind = schema.get("type") or ("object" if "properties" in schema else "")
    if kind == "array":
        return f"array of {_type(schema.get('items')) or 'any'}"
    return str(kind) + (f" ({schema['format']})" if schema.get("format") else "")


def operations(doc: dict[str, Any]) -> list[tuple[str, list[Operation]]]:
    """The contract's operations grouped by their first tag (untagged last, as 'other'), in the document's order."""
    groups: dict[str, list[Operation]] = {}
    for path, item in (doc.get("paths") or {}).items():
        if not isinstance(item, dict):
            continue
        shared = resolve(doc, item.get("parameters") or [])
        for method in METHODS:
            op = item.get(method)
            if not isinstance(op, dict):
                continue
            params: dict[tuple[str, str], Parameter] = {}
            for p in [*shared, *resolve(doc, op.get("parameters") or [])]:
                if isinstance(p, dict) and p.get("name") and p.get("in"):
                    params[(p["in"], p["name"])] = Parameter(
                        str(p["name"]), str(p["in"]), bool(p.get("required")) or p["in"] == "path",
                        str(p.get("description") or ""), _type(p.get("schema")))
            body = resolve(doc, op.get("requestBody")) if op.get("requestBody") else None
            body_type = body_schema = None
            example = ""
            if isinstance(body, dict) and isinstance(body.get("content"), dict) and body["content"]:
                body_type, media = next(iter(body["content"].items()))
                media = media if isinstance(media, dict) else {}
                schema = media.get("schema")
                body_schema = json.dumps(schema, indent=2, sort_keys=True) if schema is not None else None
                if "example" in media:
                    example = json.dumps(media["example"], indent=2)
            responses = [(str(code), str((resolve(doc, r) or {}).get("description") or ""))
                         for code, r in (op.get("responses") or {}).items() if isinstance(r, dict)]
            tags = op.get("tags") or ["other"]
            groups.setdefault(str(tags[0]), []).append(Operation(
                f"{method}-{path}", method.upper(), str(path), str(op.get("summary") or op.get("operationId") or ""),
                list(params.values()), body_type, body_schema, example, responses))
    return sorted(groups.items(), key=lambda g: g[0] == "other")
