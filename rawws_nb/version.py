"""The package version (one place; `rawws_nb.__version__` re-exports it)."""

__version__ = "0.1.0"
