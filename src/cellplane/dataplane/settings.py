"""How a data plane's agent is started: its control plane and credentials (the loop's) and the local runtime's
listeners, caches and telemetry rates (``cellplane dataplane run``'s options)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class AgentSettings:
    controlplane: str
    token: str
    data_dir: Path
    token_file: Path | None = None  # where the token came from: read again when the control plane refuses it
    name: str = "local"
    organization: str = "default"
    gateway_host: str = "127.0.0.1"
    gateway_port: int = 0
    bind_unbound: bool = True
    cache_dir: Path | None = None
    python_installer: str = "auto"
    heartbeat: float = 10.0  # seconds between status reports when nothing changes (STALE_AFTER is 30 s)
    metrics_interval: float = 10.0  # seconds per metrics window sent to the control plane
    metrics_port: int | None = 0  # the Prometheus endpoint on gateway_host (0: any free port; None: none)
    access_log_rate: float = 200.0  # access lines sent to the control plane per second at most (burst: 10 s worth)
    # gateway processes besides the agent's own; 0 by default: inside the agent they do not pay off yet
    # (docs/performance.md, "What limits the figures")
    gateway_workers: int = 0
    # seconds the scaler's stable window averages the load over (its panic window is a tenth); tests shorten it
    scaling_window: float = 60.0
    runtime: str = "local"  # what runs the workloads (local or kubernetes): the DataPlane's type, sent at registration
