"""What a worker does not pay for on its way to the first task."""

from __future__ import annotations

import platform
import sys

import pytest

from tests.conftest import fresh_python_output
from tq.worker.banner import platform_text


@pytest.mark.skipif(sys.platform != "linux", reason="the banner's text follows Linux's uname")
def test_banner_names_the_platform_as_platform_module_does():
    processor = platform.uname().processor
    if processor not in ("", "unknown", platform.machine()):
        pytest.skip(f"platform.platform() adds the processor {processor!r} here")
    assert platform_text() == platform.platform()


def test_importing_tq_loads_no_digest_modules():
    # hashlib and hmac cost ~0.8 MB in every worker process; only signing needs them.
    code = (
        "import sys, tq, tq.worker.consumer; print(sorted({'hmac', 'hashlib'} & set(sys.modules)))"
    )
    assert fresh_python_output(code) == ["[]"]


def test_preloading_a_redis_broker_warms_what_each_first_connection_would_do():
    pytest.importorskip("redis")
    code = (
        "import sys\n"
        "from tq import App\n"
        "from tq.transports import redis_client_identity\n"
        "from tq.worker.connection import preload_broker_modules\n"
        "preload_broker_modules(App('t', broker='redis://127.0.0.1:6379/0'))\n"
        "print('encodings.idna' in sys.modules, redis_client_identity.cache_info().currsize)\n"
    )
    assert fresh_python_output(code) == ["True", "1"]
