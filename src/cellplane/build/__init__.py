"""The build plane: from a source tree to an immutable, content-addressed artifact, without Docker.

``plan`` holds the contract between detection and the runner; ``detect`` chooses a strategy;
``dockerfile`` translates a Dockerfile into the same steps; ``runner`` executes a plan in a build
directory (a subprocess of the control plane's worker pool); ``scans`` checks the result;
``archive`` packs and safely unpacks trees.
"""
