"""Where the CLI finds its server and token: flags, then environment, then the saved login context."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from platformdirs import user_config_dir

from cellplane import yamlload
from cellplane.privatefiles import write_private

DEFAULT_SERVER = "http://127.0.0.1:8780"


def config_path() -> Path:
    override = os.environ.get("CELLPLANE_CONFIG")
    return Path(override) if override else Path(user_config_dir("cellplane")) / "config.yaml"


def load_config() -> dict[str, Any]:
    path = config_path()
    if not path.exists():
        return {"current": None, "contexts": {}}
    try:
        data = yamlload.load(path.read_text()) or {}
    except yaml.YAMLError:
        data = {}
    if not isinstance(data, dict) or not isinstance(data.get("contexts"), dict):
        return {"current": None, "contexts": {}}
    return data


def save_context(name: str, server: str, token: str, org: str | None, project: str | None) -> Path:
    """Save a login context (the file is private to its owner, as it holds a token)."""
    data = load_config()
    data["contexts"][name] = {k: v for k, v in
                              {"server": server, "token": token, "organization": org, "project": project}.items()
                              if v is not None}
    data["current"] = name
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_private(path, yaml.safe_dump(data, sort_keys=False))
    return path


@dataclass
class Settings:
    server: str
    token: str | None
    organization: str
    project: str | None


def resolve(server: str | None, token: str | None, org: str | None, project: str | None) -> Settings:
    data = load_config()
    current = data["contexts"].get(data.get("current") or "", {}) if isinstance(data.get("contexts"), dict) else {}
    current = current if isinstance(current, dict) else {}
    server = server or os.environ.get("CELLPLANE_SERVER") or current.get("server") or DEFAULT_SERVER
    token = token or os.environ.get("CELLPLANE_TOKEN") or current.get("token")
    if not token and os.environ.get("CELLPLANE_HOME"):
        admin = Path(os.environ["CELLPLANE_HOME"]) / "admin.token"
        if admin.is_file():
            token = admin.read_text().strip()
    org = org or os.environ.get("CELLPLANE_ORG") or current.get("organization") or "default"
    project = project or os.environ.get("CELLPLANE_PROJECT") or current.get("project")
    return Settings(server.rstrip("/"), token, org, project)
