"""What a profile holds, as the snapshot reads it for the write-back: the digest of its
analytics (none, its own, or 0 for analytics written before digests), kept to the bit in the
frames although most profiles hold none."""

from __future__ import annotations

from decimal import Decimal

import pyarrow as pa

from crm_analytics.snapshot import CUSTOMER_COLUMNS, held_digest, to_pandas


def test_a_profile_holds_its_digest_none_or_the_mark_of_older_analytics() -> None:
    assert held_digest(None) is None
    assert held_digest({}) is None
    assert held_digest({"segments": ["new"], "digest": -(2**63)}) == -(2**63)
    assert held_digest({"digest": Decimal(2**63 - 1)}) == 2**63 - 1  # as DynamoDB gives numbers
    assert held_digest({"segments": ["new"]}) == 0  # written before digests: rewritten once
    assert held_digest({"digest": True}) == 0  # not a digest


def test_the_frames_keep_every_bit_of_a_digest_beside_missing_ones() -> None:
    big = [2**63 - 1, None, -(2**62) - 3, None, 2**53 + 1]
    rows = [{**dict.fromkeys(CUSTOMER_COLUMNS), "customer_id": f"c{i}"} for i in range(5)]
    for row, digest in zip(rows, big, strict=True):
        row["analytics_digest"] = digest
    table = pa.Table.from_pylist(rows, schema=pa.schema(list(CUSTOMER_COLUMNS.items())))

    frame = to_pandas(table)

    digests = frame["analytics_digest"]
    assert [
        None if missing else int(v) for v, missing in zip(digests, digests.isna(), strict=True)
    ] == big
    assert str(frame["analytics_digest"].dtype) == "Int64"
