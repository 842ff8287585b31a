"""Cellplane: an internal developer platform in one Python package."""

__version__ = "0.1.0"
API_VERSION = "cellplane.dev/v1alpha1"
