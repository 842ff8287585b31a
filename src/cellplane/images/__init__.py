"""OCI images of build artifacts, pushed over the OCI distribution API (no Docker daemon) and signed.

``layer`` packs an artifact into one deterministic layer, ``config`` and ``manifest`` write the image's JSON,
``registry`` talks to a registry (basic and Bearer-token auth, blob mounts, chunked uploads), ``sign`` makes and
checks cosign-format signatures, ``publish`` puts the pieces together for one build. The package imports nothing
from the planes: the control plane's build worker calls it with the settings and keys it holds.
"""
