"""The local data plane: an agent that runs deployments as supervised processes behind a gateway."""
