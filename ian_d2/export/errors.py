"""The error of the export package, its lowest module (no imports): every other module of
:mod:`ian_d2.export` may raise it."""

__all__ = ["ExportError"]


class ExportError(ValueError):
    """A model that cannot be exported, or whose export does not reproduce it; says why."""
