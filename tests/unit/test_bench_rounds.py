"""benchmarks/: a run's rounds combine into medians, and each round's ratios are printed."""

from __future__ import annotations

import io
import json
import sys

from rich.console import Console

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
from measure import Figures, combine_rounds  # noqa: E402
from report import print_rounds, write_json  # noqa: E402


def test_each_figure_is_the_median_of_the_rounds_that_measured_it() -> None:
    rounds = [
        Figures(drain_per_s=3_500, rtt_p50_ms=1.6, idle_rss_mb=75, rtt_samples_ms=[1.6]),
        Figures(drain_per_s=4_500, rtt_p50_ms=1.0, idle_rss_mb=74, rtt_samples_ms=[1.0]),
        Figures(drain_per_s=4_200, rtt_p50_ms=1.2, idle_rss_mb=74),
    ]
    combined = combine_rounds(rounds)
    assert combined.drain_per_s == 4_200
    assert combined.rtt_p50_ms == 1.2
    assert combined.idle_rss_mb == 74
    assert combined.group_enqueue_per_s is None  # no round measured it
    assert combined.rtt_samples_ms == [1.6, 1.0]
    assert combined.error is None


def test_a_failed_round_keeps_its_error_and_what_the_others_measured() -> None:
    rounds = [Figures(drain_per_s=4_000), Figures(enqueue_per_s=9_000, error="drain: stuck")]
    combined = combine_rounds(rounds)
    assert combined.error == "drain: stuck"
    assert combined.drain_per_s == 4_000
    assert combined.enqueue_per_s == 9_000


def test_the_ratios_of_every_round_are_printed_and_written(tmp_path) -> None:
    rounds = {
        "tq": [Figures(drain_per_s=4_000), Figures(drain_per_s=3_000)],
        "celery": [Figures(drain_per_s=2_000), Figures(drain_per_s=2_000)],
    }
    out = io.StringIO()
    print_rounds(Console(file=out, width=200), rounds)
    assert "tq/Celery by round (the table shows medians): drain 2.00, 1.50" in out.getvalue()

    path = tmp_path / "figures.json"
    figures = {name: combine_rounds(measured) for name, measured in rounds.items()}
    write_json(
        path, figures, broker="amqp", server="RabbitMQ", settings={"rounds": 2}, machine={},
        command="run.py", rounds=rounds,
    )  # fmt: skip
    document = json.loads(path.read_text())
    assert document["results"]["tq"]["drain_per_s"] == 3_500
    assert [one["drain_per_s"] for one in document["rounds"]["celery"]] == [2_000, 2_000]
