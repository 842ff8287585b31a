"""What an agent keeps on its own disk, so that it can restart while the control plane is unreachable.

``desired.json`` is the last desired state received (secrets in it stay sealed), ``ports.json`` the
listener ports (URLs stay the same across restarts), ``started-runs.json`` the manual runs already
started (never run twice), ``status.json`` the last observed state (for people and tests). A file lock
keeps two agents from sharing one data directory.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import secrets
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from cellplane.contract import DesiredState
from cellplane.datadir import make_private
from cellplane.errors import CellplaneError
from cellplane.privatefiles import write_private

log = logging.getLogger("cellplane.dataplane")


def write_json(path: Path, data: Any) -> None:
    """Atomically replace ``path`` (a crash leaves the old or the new file, never half of one)."""
    write_private(path, json.dumps(data, separators=(",", ":")))


def read_json(path: Path, default: Any) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return default


class LocalState:
    def __init__(self, root: Path) -> None:
        self.root = root
        make_private(root, "the data plane's data directory")
        self._lock_file: Any = None

    def lock(self) -> None:
        """Hold the data directory for this process; a second agent on it fails with a clear error."""
        f = (self.root / "agent.lock").open("a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            raise CellplaneError(f"another data-plane agent is running on {self.root}", code="locked",
                                 status=409) from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        self._lock_file = f

    def unlock(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    @property
    def key_path(self) -> Path:
        return self.root / "agent.key"

    def agent_id(self) -> str:
        path = self.root / "agent.id"
        if path.exists():
            return path.read_text().strip()
        value = secrets.token_hex(8)
        path.write_text(value + "\n")
        return value

    def _key(self, name: str) -> bytes:
        """A 256-bit key kept in ``name`` (0600, hex), made at the first call."""
        path = self.root / name
        if path.exists():
            return bytes.fromhex(path.read_text().strip())
        key = secrets.token_bytes(32)
        write_private(path, key.hex() + "\n")
        return key

    def token_secret(self) -> bytes:
        """The key of the gateway's OAuth2 tokens: kept, so tokens stay valid across agent restarts."""
        return self._key("gateway.key")

    def cell_key(self) -> bytes:
        """The key the cells' credentials are derived from (``cellplane.gateway.auth.cell_credential``): kept, so
        the URLs given to workloads stay valid across agent restarts; never sent anywhere."""
        return self._key("cell.key")

    @property
    def metrics_token_path(self) -> Path:
        return self.root / "metrics.token"

    def metrics_token(self) -> str:
        """The bearer token the agent's Prometheus endpoint requires (``metrics.token``, 0600): kept across restarts,
        so a scraper's ``bearer_token_file`` stays right; delete the file to get a new one at the next start."""
        path = self.metrics_token_path
        if path.exists():
            token = path.read_text().strip()
            if token:
                return token
        token = secrets.token_urlsafe(32)
        write_private(path, token + "\n")
        return token

    def desired(self) -> DesiredState | None:
        """The cached desired state, parsed (``DesiredState.from_wire``); None when there is none, or when the file
        cannot be read or parsed (said in the log: the agent then starts as if it had none)."""
        path = self.root / "desired.json"
        data = read_json(path, None)
        if not (isinstance(data, dict) and "revision" in data):
            return None
        try:
            return DesiredState.from_wire(data)
        except ValidationError as e:
            log.warning("the cached desired state in %s is not one this agent can read; ignored (%s)", path, e)
            return None

    def save_desired(self, wire: dict[str, Any]) -> None:
        """Keep the desired state as the control plane sent it (the JSON document, unchanged)."""
        write_json(self.root / "desired.json", wire)

    def ports(self) -> dict[str, int]:
        data = read_json(self.root / "ports.json", {})
        return {k: v for k, v in data.items() if isinstance(v, int)} if isinstance(data, dict) else {}

    def save_ports(self, ports: dict[str, int]) -> None:
        write_json(self.root / "ports.json", ports)

    def started_runs(self) -> set[str]:
        data = read_json(self.root / "started-runs.json", [])
        return set(data) if isinstance(data, list) else set()

    def save_started_runs(self, runs: set[str]) -> None:
        write_json(self.root / "started-runs.json", sorted(runs)[-5000:])

    def save_status(self, status: dict[str, Any]) -> None:
        write_json(self.root / "status.json", status)
