"""oore: a self-hosted CI control plane speaking the Oore CI ``oored`` HTTP API."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("oore")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
