"""A 100 kB GPU model name with a raw carriage return, sent by a real stream, reaches neither labels
nor logs at full size."""

from __future__ import annotations

import re
from pathlib import Path

from tests import streams
from tests.kit import Pki, Service, metric_value, start_collector, wait_for

HOST = "node-text"


def test_long_and_control_text_is_cut_before_labels_and_logs(tmp: Path, test_pki: Pki, services: list[Service]) -> None:
    collector = start_collector(tmp, test_pki)
    services.append(collector)
    hello = streams.hello(HOST)
    hello.hello.gpus[0].name = "NVIDIA\r" + "M" * 100_000
    hello.hello.gpus[0].serial = 'x"}\nfake_metric 1'
    cert, key = test_pki.agent(HOST)
    outcome = streams.exchange(
        collector.target, streams.credentials(test_pki.ca, cert, key), [hello, streams.frame_message(1)]
    )
    assert outcome.welcomed, outcome.details

    def exported() -> str | None:
        text = collector.metrics()
        return text if f'host="{HOST}"' in text else None

    text = wait_for(exported, what="the host's series")
    models = re.findall(r'model="([^"]*)"', text)
    assert models and all(len(m) <= 64 and "\\r" not in m and "\r" not in m for m in models)
    assert "\nfake_metric" not in text
    assert (metric_value(text, "gpulse_collector_agent_text_cleaned_total") or 0) >= 2
    log = collector.log()
    assert "M" * 100 not in log and len(log) < 100_000
