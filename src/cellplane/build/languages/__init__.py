"""One module per language that needs more than installing dependencies: detection and build steps."""
