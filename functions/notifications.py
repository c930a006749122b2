"""Transactional messages: the one send path, and a customer's message timeline.

(Being built: see the issue 4 note.)"""

from __future__ import annotations

from chalice import Response
from chalice.app import Request

from crm.api import endpoint


@endpoint
def list_notifications(request: Request, customer_id: str) -> Response:
    raise NotImplementedError
