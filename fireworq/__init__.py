"""fireworq-py: an HTTP job queue daemon compatible with Fireworq 1.5."""

# First, before any module imports twisted.internet.endpoints (see fireworq.inherited).
from fireworq import inherited as _inherited  # noqa: F401

__version__ = "0.1.0"
