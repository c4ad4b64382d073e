"""redis-py connections introduce themselves as before, without a metadata lookup each."""

from __future__ import annotations

import pytest

from tq.transports import redis_client_identity

redis = pytest.importorskip("redis")


def test_the_identity_is_worked_out_once_and_names_redis_py_and_its_version():
    from redis.connection import Connection
    from redis.utils import get_lib_version

    assert redis_client_identity() is redis_client_identity()
    connection = Connection(**redis_client_identity())
    identity = getattr(connection, "driver_info", None)
    if identity is None:  # redis-py < 7
        assert connection.lib_version == get_lib_version()
    else:
        assert identity.formatted_name == "redis-py"
        assert identity.lib_version == get_lib_version()
