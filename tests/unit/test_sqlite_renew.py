"""The embedded broker's store: renewing a holder's messages restarts their visibility timeout."""

from __future__ import annotations

import json

from tq.transports.sqlite_store import BrokerStore

ME, OTHER = (111, 1.0), (222, 2.0)


def delivered_at(store: BrokerStore) -> dict[str, float]:
    rows = store._read("SELECT payload, delivered_at FROM unacked")
    return {json.loads(payload)["body"]: at for payload, at in rows}


def test_renewal_moves_only_the_holders_messages_to_now_in_their_order(tmp_path) -> None:
    store = BrokerStore(tmp_path / "broker.db")
    store.declare_queue("q")
    messages = [(["q"], 0, json.dumps({"body": f"m{i}"}), 0.0, None) for i in range(3)]
    store.put(messages, durable=False)
    store.claim("q", count=2, keep_unacked=True, holder=ME, now=100.0)
    store.claim("q", count=1, keep_unacked=True, holder=OTHER, now=100.5)

    assert store.renew(ME, now=500.0) == 2
    times = delivered_at(store)
    assert times["m0"] == 500.0 and times["m0"] < times["m1"]  # the oldest is now, order kept
    assert times["m2"] == 100.5  # another holder's message is left alone
    # Nothing to do for a holder with nothing older than now.
    assert store.renew(ME, now=400.0) == 0

    # The sweep restores only what was delivered (or renewed) before the timeout's start.
    restored = store.sweep(
        own=ME, is_alive=lambda pid, started: True, visible_before=450.0, now=0.0
    )
    assert restored == 1 and store.size("q") == 1 and set(delivered_at(store)) == {"m0", "m1"}
    store.close()
