"""The app the integration tests run: broker, backend and queue come from TQ_* variables."""

import json
import os

from tq import App

app = App("tqtest", include=["tqtest.tasks"])
app.conf.update(
    task_routes={
        "tqtest.tasks.routed_exact": "hipri",
        "tqtest.tasks.glob_*": {"queue": "globbed"},
    },
    result_extended=True,
    result_expires=int(os.environ.get("TQ_TEST_RESULT_EXPIRES", "3600")),
    accept_content=os.environ.get("TQ_TEST_ACCEPT", "json").split(","),
    worker_allow_destructive_control=os.environ.get("TQ_TEST_DESTRUCTIVE", "1") == "1",
    broker_transport_options=json.loads(os.environ.get("TQ_TEST_TRANSPORT_OPTIONS", "{}")),
)
# Any other setting a test needs for its worker, as JSON.
app.conf.update(json.loads(os.environ.get("TQ_TEST_CONF", "{}")))
