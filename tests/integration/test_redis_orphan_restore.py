"""Messages a lost Redis connection held unacked go back to their queue once Redis answers:
a restore that fails (Redis went away again) is tried again after the next reconnection
instead of leaving them to the visibility timeout (an hour by default)."""

from __future__ import annotations

import pytest

from tq.worker.connection import restore_orphans

from .test_redis_transport import connect, consume, direct_queue, publish, raw_client

pytestmark = pytest.mark.timeout(60)


def test_a_failed_restore_is_tried_again_after_the_next_reconnection(own_redis):
    url = (f"{own_redis.url}/0", "orphans:")
    queue = direct_queue("held")
    with connect(url) as connection:
        publish(connection, queue, [1, 2])
    connection = connect(url)
    try:
        held = consume(connection, [queue], 2, prefetch=4, ack=False)
        assert sorted(number for number, _message in held) == [1, 2]
        orphans = [connection.default_channel]
        own_redis.stop()
        restore_orphans(orphans)  # Redis refuses: kept for the next reconnection
        assert orphans == [connection.default_channel]
        own_redis.start()
        restore_orphans(orphans)
        assert orphans == []
        client = raw_client(url)
        try:
            assert client.llen("orphans:held") == 2
            assert client.hlen("orphans:unacked") == 0
        finally:
            client.close()
    finally:
        connection.collect()
