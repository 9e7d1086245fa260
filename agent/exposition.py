"""The agent's optional local /metrics: the newest tick's values, under the collector's names.

For users who scrape nodes directly. The series and labels are the collector's (``gpulse_gpu_*``
with host, gpu, uuid, model), so the same dashboards and rules work on either. Off by default;
prometheus_client is imported only when it is on, to keep the agent light.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from agent.records import Row, Rows
from protos import telemetry_pb2 as pb
from protos.fields import CATALOG, FieldCatalog, Kind

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

__all__ = ["AgentMetrics", "SampleSource", "serve"]


class SampleSource(Protocol):
    """What the exposition reads: the Sampler's newest tick, its inventory and its counters."""

    host_id: str
    hello: pb.Hello | None
    latest: tuple[int, Row, Rows] | None
    xid_counts: dict[tuple[int, int], int]


class AgentMetrics:
    """A prometheus_client collector over a SampleSource; register it in a registry of its own."""

    def __init__(self, source: SampleSource, catalog: FieldCatalog = CATALOG) -> None:
        self.source = source
        self.catalog = catalog

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        source = self.source
        hello, latest = source.hello, source.latest
        if hello is None or latest is None:
            return
        unix_ns, host_values, gpu_values = latest
        host = [source.host_id]
        timestamp = unix_ns / 1e9
        gpus = [[source.host_id, str(g.index), g.uuid, g.name] for g in hello.gpus]
        gpu_labels = ["host", "gpu", "uuid", "model"]
        stamp = GaugeMetricFamily(
            "gpulse_agent_last_sample_timestamp_seconds", "Sample time of the values below.", labels=["host"]
        )
        stamp.add_metric(host, timestamp)
        yield stamp
        for i, fid in enumerate(hello.host_field_ids):
            yield from _family(self.catalog, fid, ["host"], [(host, float(host_values[i]))])
        for j, fid in enumerate(hello.gpu_field_ids):
            samples = [(labels, float(gpu_values[g][j])) for g, labels in enumerate(gpus)]
            yield from _family(self.catalog, fid, gpu_labels, samples)
        info = GaugeMetricFamily(
            "gpulse_gpu_info", "GPU inventory; always 1.", labels=[*gpu_labels, "pci_bus_id", "driver_version"]
        )
        for labels, g in zip(gpus, hello.gpus, strict=True):
            info.add_metric([*labels, g.pci_bus_id, g.driver_version], 1.0)
        yield info
        xids = CounterMetricFamily(
            "gpulse_gpu_xid_errors", "XID errors reported by the driver, every occurrence.", labels=[*gpu_labels, "xid"]
        )
        for (index, xid), count in sorted(source.xid_counts.items()):
            if index < len(gpus):
                xids.add_metric([*gpus[index], str(xid)], count)
        yield xids
        # The GPU backend's own counters (NVML errors, time budgets, re-inits) and the spool's (drops,
        # damage), where they keep any.
        for part in ("gpu", "spool"):
            counters = getattr(getattr(source, part, None), "counters", None)
            if callable(counters):
                for name, help_text, value in counters():
                    family = CounterMetricFamily(name, help_text, labels=["host"])
                    family.add_metric(host, value)
                    yield family


def _family(
    catalog: FieldCatalog, fid: int, label_names: list[str], samples: list[tuple[list[str], float]]
) -> Iterator[Metric]:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    field = catalog.get(fid)
    if field is None:
        return
    present = [(labels, value) for labels, value in samples if not math.isnan(value)]
    if field.kind is Kind.COUNTER:
        family: CounterMetricFamily | GaugeMetricFamily = CounterMetricFamily(
            field.metric_name.removesuffix("_total"), field.help, labels=label_names
        )
    else:
        family = GaugeMetricFamily(field.metric_name, field.help, labels=label_names)
    for labels, value in present:
        family.add_metric(labels, value)
    yield family


def serve(source: SampleSource, listen: str, web_config: Path | None = None) -> Callable[[], None]:
    """Serve /metrics on ``listen`` ('host:port') from a thread; returns the function that stops it."""
    from prometheus_client import CollectorRegistry, disable_created_metrics, generate_latest

    from agent.metrics_server import MetricsServer

    disable_created_metrics()  # process-wide; the _created series only double the counters
    registry = CollectorRegistry(auto_describe=False)
    registry.register(AgentMetrics(source))
    server = MetricsServer(lambda: generate_latest(registry), listen, web_config=web_config).start()
    return server.stop
