"""A client of fireworq-py's HTTP API (docs/client.md), blocking or on Twisted.

    from fireworq.client import Client, APIError

    with Client("http://127.0.0.1:8080") as client:
        job = client.push("welcome", "http://127.0.0.1:8000/send", {"user": 42})

The Twisted flavour, on treq, is L{fireworq.client.twisted.TwistedClient}; both run the calls
of L{fireworq.client.api}.
"""

from fireworq.client.api import APIError, Call, Paged, job_members
from fireworq.client.blocking import Client
from fireworq.client.values import (
    FailedJob,
    Job,
    Node,
    Page,
    ProcessStats,
    PushedJob,
    Queue,
    QueueStats,
    Result,
    RetriedJobs,
    Routing,
    UnexpectedAnswer,
)

__all__ = [
    "APIError", "Call", "Client", "FailedJob", "Job", "Node", "Page", "Paged", "ProcessStats",
    "PushedJob", "Queue", "QueueStats", "Result", "RetriedJobs", "Routing", "UnexpectedAnswer",
    "job_members",
]
