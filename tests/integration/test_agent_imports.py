"""The running agent (nvml source over the C stub, local /metrics on) loads no numpy, aiohttp or collector code."""

from __future__ import annotations

from bench.agent_imports import FORBIDDEN, forbidden, parse, run_agent


def test_the_parser_sees_a_forbidden_import() -> None:
    lines = "import time: self [us] | cumulative | imported package\nimport time:      5 |     9 |   numpy.core\n"
    assert forbidden(parse(lines)) == ["numpy.core"]


def test_the_running_agent_loads_nothing_it_does_not_need() -> None:
    imports = run_agent(seconds=1.0)
    names = {i.module for i in imports}
    assert {"agent.sources.nvml", "pynvml", "prometheus_client"} <= names  # the run did reach them
    assert forbidden(imports) == [], f"the agent loaded {FORBIDDEN}-modules"
