"""Where a data plane's workloads run: the ``Runtime`` interface the agent's loop drives (``base``) and its
implementations (``local``: supervised processes behind the platform's gateway). Not to be confused with
``cellplane.runtime``, which is how one artifact is launched (its language's runtime, its start command)."""
