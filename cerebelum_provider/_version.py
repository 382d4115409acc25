"""The package's version: one home, read by the package root, the client and the build (hatch)."""

__version__ = "0.1.0"
