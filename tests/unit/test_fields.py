from __future__ import annotations

import re

import pytest

from protos.fields import CATALOG, Field, FieldCatalog, Kind, Scope

REQUIRED_GPU = {
    "utilization", "memory_copy_utilization", "memory_used", "memory_free", "memory_total", "temperature",
    "memory_temperature", "power_usage", "power_limit", "energy_consumption", "sm_clock", "memory_clock",
    "clock_event_reasons", "pcie_replay", "ecc_corrected_volatile", "ecc_uncorrected_volatile", "fan_speed", "pstate",
}  # fmt: skip
REQUIRED_HOST = {
    "cpu_utilization", "load1", "memory_used", "swap_used", "disk_read", "disk_written", "network_receive",
    "network_transmit", "uptime",
}  # fmt: skip


def test_catalog_covers_the_contracted_fields() -> None:
    gpu = {CATALOG[f].name for f in CATALOG.gpu_ids}
    host = {CATALOG[f].name for f in CATALOG.host_ids}
    assert gpu >= REQUIRED_GPU
    assert host >= REQUIRED_HOST


def test_every_field_has_a_prometheus_name_unit_kind_and_help() -> None:
    for field in CATALOG.fields:
        assert re.fullmatch(r"gpulse_(host|gpu)_[a-z0-9_]+", field.metric_name), field
        assert field.help.endswith("."), field
        assert field.metric_name.endswith("_total") == (field.kind is Kind.COUNTER)
        assert field.scope is (Scope.HOST if field.id < 100 else Scope.GPU)


def test_metric_names_use_base_units() -> None:
    assert CATALOG.gpu("temperature").metric_name == "gpulse_gpu_temperature_celsius"
    assert CATALOG.gpu("energy_consumption").metric_name == "gpulse_gpu_energy_consumption_joules_total"
    assert CATALOG.gpu("sm_clock").metric_name == "gpulse_gpu_sm_clock_hertz"
    assert CATALOG.gpu("utilization").metric_name == "gpulse_gpu_utilization_ratio"
    assert CATALOG.host("disk_read").metric_name == "gpulse_host_disk_read_bytes_total"


def test_ids_and_names_are_unique() -> None:
    f = Field(1, Scope.HOST, "x", "", Kind.GAUGE, "X.")
    with pytest.raises(ValueError, match="duplicate field id"):
        FieldCatalog((f, Field(1, Scope.HOST, "y", "", Kind.GAUGE, "Y.")))
    with pytest.raises(ValueError, match="duplicate field name"):
        FieldCatalog((f, Field(2, Scope.HOST, "x", "", Kind.GAUGE, "Y.")))
    assert len({f.metric_name for f in CATALOG.fields}) == len(CATALOG.fields)
