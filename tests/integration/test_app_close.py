"""`app.close()` and `with App(...) as app:` release the client's connections, as Celery's do."""

from __future__ import annotations

import os

import pytest

from tq import App

pytestmark = pytest.mark.timeout(60)


def test_closing_an_app_releases_its_connections_and_it_connects_again_when_used(
    amqp_broker, start_worker
):
    start_worker("-c", "1")
    with App("closing", broker=os.environ["TQ_BROKER_URL"], result_backend="rpc://") as app:
        add = app.signature("tqtest.tasks.add", args=(2, 3), queue=amqp_broker.queue)
        assert add.delay().get(timeout=20) == 5
        publishing = app.publisher.connection
        backend = app.backend
        replies = backend._connection
        assert publishing.connected and replies is not None and replies.connected
    assert not publishing.connected
    assert not replies.connected
    # Used again, the app makes new connections (and a new backend).
    assert add.delay().get(timeout=20) == 5
    assert app.publisher.connection is not publishing and app.backend is not backend
    app.close()
