"""Domain errors. The HTTP mapping lives in ``fireworq.api`` only."""

from __future__ import annotations


class FireworqError(Exception):
    """Base of every error this package raises on purpose."""


class StoreUnavailable(FireworqError):
    """The store did not answer: refused, lost, timed out, locked. Safe to retry later."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class OutcomeUnknown(StoreUnavailable):
    """A write whose statement reached the store, then no answer: it may have been stored."""

    def __init__(self) -> None:
        super().__init__("outcome unknown, the job may have been stored")


class StoreMisconfigured(StoreUnavailable):
    """The store refuses us for a reason a retry will not fix (wrong password, unknown
    database). Requests get 503 like any outage; at start it stops the daemon."""


class NotStored(FireworqError):
    """One job of a push batch that the store did not store (the others may be stored)."""


class JobTooLarge(NotStored):
    """A job larger than the store can take in one statement; the message says both sizes."""


class InvalidInput(FireworqError):
    """A request value is malformed; the message is shown to the client as is."""


class NotFound(FireworqError):
    """Something named by the request does not exist; the message is shown as is."""


class ConfigError(FireworqError):
    """An invalid configuration value; the message names the key and the problem."""
