"""tq's packing of the claim call is byte for byte what redis-py would send."""

from __future__ import annotations

import pytest

redis = pytest.importorskip("redis")

from tq.transports.redis_scripts import (  # noqa: E402
    CLAIM_SCRIPT,
    ClaimCall,
    claim_args,
    claim_keys,
    pack_command,
)


def test_a_claim_call_packs_as_redis_py_packs_it():
    call = ClaimCall(
        acks=["8c1e-tag", "9d2f-tag"], queues=["celery", "hipri"], count=4, score="1765.25"
    )
    keys = claim_keys(
        prefix="", unacked="unacked", index="unacked_index", queue_keys=["celery", "hipri"]
    )
    args = ["EVALSHA", "a" * 40, len(keys), *keys, *claim_args(call, [True, False])]
    expected = b"".join(redis.Connection().pack_command(*args))
    assert b"".join(pack_command(args)) == expected
    source_call = ["EVAL", CLAIM_SCRIPT, 0, "naïve", b"\x00raw\r\n", 0]
    assert b"".join(pack_command(source_call)) == b"".join(
        redis.Connection().pack_command(*source_call)
    )
