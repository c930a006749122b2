"""DynamoDB failing as AWS does, in the in-process moto of the `aws` fixture: a test asks for
`dynamodb_chaos` (import it into the test module) and configures the share it wants; the setting
goes back to none afterwards. See `crm_local.chaos`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from crm_local.chaos import Chaos, chaos


@pytest.fixture
def dynamodb_chaos(aws: dict[str, object]) -> Iterator[Chaos]:
    """The process's chaos, off until the test calls `configure(rate, seed, ...)`."""
    chaos.configure(0.0)
    try:
        yield chaos
    finally:
        chaos.configure(0.0)
