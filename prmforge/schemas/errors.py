"""Typed errors. A bad input row raises :class:`RowError`; the runner quarantines it."""

from __future__ import annotations


class PrmforgeError(Exception):
    """Base of the project's own errors."""


class RowError(PrmforgeError, ValueError):
    """An input row that cannot become a record.

    ``field`` names the offending field (``"<row>"`` for the row as a whole),
    ``reason`` says what is wrong with it in words a user can act on.
    """

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class ConfigError(PrmforgeError, ValueError):
    """A build configuration that cannot run; the message names the field."""


class BuildStateError(PrmforgeError, RuntimeError):
    """A build directory that does not match the build being run (changed config, corrupt manifest)."""
