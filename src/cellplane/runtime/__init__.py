"""Running artifacts: materialising their runtimes from a shared cache, and the static file server."""
