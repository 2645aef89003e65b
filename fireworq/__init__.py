"""fireworq-py: an HTTP job queue daemon compatible with Fireworq 1.5."""

__version__ = "0.1.0"
