"""Delivering jobs to workers: the HTTP request and the reading of its answer
(docs/worker-protocol.md)."""

from fireworq.delivery.client import DeliverySettings, make_http_client
from fireworq.delivery.deliverer import Deliverer
from fireworq.delivery.result import interpret_response

__all__ = ["Deliverer", "DeliverySettings", "interpret_response", "make_http_client"]
