"""semcom: semantic communication with shared memories.

A transmitter and a receiver each keep a copy of a knowledge base and send
only what the other side cannot reconstruct. See ``semcom.link`` for the
endpoints, ``semcom.memory`` for the shared memory and its decision rules.
"""

from semcom.config import LinkConfig
from semcom.errors import SemcomError

__version__ = "0.1.0"
__all__ = ["LinkConfig", "SemcomError", "__version__"]
