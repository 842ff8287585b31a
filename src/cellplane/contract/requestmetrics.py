"""What the gateway's request metrics look like on the wire, shared by the gateway and the control plane.

The gateway counts request latencies in ``BUCKETS`` and labels requests that came through a project's cell listener
with ``CELL_CONSUMER``; the control plane stores the agent's telemetry batches with the same buckets, checks their
length in the API and attributes ``CELL_CONSUMER`` requests in its cell graph. Plain constants, no cost.
"""

from __future__ import annotations

# Upper bounds (seconds) of the latency histogram's buckets; a last, implicit one is +Inf.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# The consumer label of requests that came through a project's cell listener: callers there all show the same cell
# credential, so they are counted together (the control plane's cell graph attributes them where it can).
CELL_CONSUMER = "@cell"
