"""Errors semcom raises on bad input.

Every error a user can cause is a :class:`SemcomError`; the CLI prints its
message on one line and exits non-zero, never with a traceback.
"""


class SemcomError(Exception):
    """Base class: a clear, one-line description of what was wrong."""


class ConfigError(SemcomError, ValueError):
    """A configuration value is out of range or of the wrong type."""


class SourceError(SemcomError):
    """A source (regime name, video file, image folder) cannot be read."""


class WireFormatError(SemcomError, ValueError):
    """A message or stream is malformed, truncated or inconsistent with the receiver's state."""


class WeightsError(SemcomError):
    """Model weights are missing, unreadable or do not match the stream."""
