from __future__ import annotations

import io
import json

import structlog

from runtime import logs


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_json_lines_when_not_a_tty() -> None:
    out = io.StringIO()
    logs.configure("info", stream=out)
    structlog.get_logger("t").info("agent connected", host_id="node-1")
    record = json.loads(out.getvalue().strip())
    assert record["event"] == "agent connected"
    assert record["host_id"] == "node-1"
    assert record["level"] == "info"
    assert "timestamp" in record


def test_readable_console_lines_on_a_tty_and_level_filtering() -> None:
    out = Tty()
    logs.configure("warning", stream=out)
    log = structlog.get_logger("t")
    log.info("hidden")
    log.warning("gpu lost", gpu=3)
    text = out.getvalue()
    assert "hidden" not in text
    assert "gpu lost" in text and "gpu=3" in text
    assert not text.lstrip().startswith("{")
