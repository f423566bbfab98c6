"""semcom: semantic communication with shared memories.

A transmitter and a receiver each keep a copy of a knowledge base and send
only what the other side cannot reconstruct. See ``semcom.link`` for the
endpoints, ``semcom.memory`` for the shared memory and its decision rules.
"""

from semcom.errors import SemcomError

__version__ = "0.1.0"
__all__ = ["LinkConfig", "SemcomError", "__version__"]


def __getattr__(name: str):
    """``semcom.LinkConfig`` on first use (PEP 562): importing the package does not import pydantic and numpy."""
    if name == "LinkConfig":
        from semcom.config import LinkConfig

        return LinkConfig
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
