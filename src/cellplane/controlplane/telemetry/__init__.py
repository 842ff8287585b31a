"""What the data planes report about running workloads: logs, access logs, metrics, traces; and the alerts,
retention and cell graph built on them. See docs/observability.md."""
