from __future__ import annotations

import unicodedata

from hypothesis import given
from hypothesis import strategies as st

from collector.ingest.text import DEFAULT_LIMIT, ELLIPSIS, LIMITS, STRIPPED, clean, clean_message
from protos import telemetry_pb2 as pb


def test_control_characters_go_and_long_text_is_cut_with_an_ellipsis() -> None:
    assert clean("NVIDIA H100\r\n\x1b[31m", 64) == "NVIDIA H100[31m"
    assert clean("a\u2028b\u200bc", 64) == "abc"
    cut = clean("x" * 100_000, 64)
    assert len(cut) == 64 and cut.endswith(ELLIPSIS)
    assert clean("NVIDIA A100-SXM4-80GB", 64) == "NVIDIA A100-SXM4-80GB"


@given(st.text(max_size=500), st.integers(min_value=1, max_value=300))
def test_cleaned_text_is_printable_and_within_its_limit(text: str, limit: int) -> None:
    out = clean(text, limit)
    assert len(out) <= limit
    assert not any(unicodedata.category(ch) in STRIPPED for ch in out)


def test_every_string_of_a_hello_and_its_gpus_is_bounded() -> None:
    hello = pb.Hello(
        host_id="node-1",
        agent_version="v\r1",
        gpus=[pb.GpuInventory(index=0, uuid="GPU-0", name="M" * 100_000 + "\r", serial="s\n1")],
    )
    assert clean_message(hello) == 3
    gpu = hello.gpus[0]
    assert len(gpu.name) == LIMITS[("GpuInventory", "name")] and "\r" not in gpu.name
    assert (gpu.serial, hello.agent_version, hello.host_id) == ("s1", "v1", "node-1")


def test_workload_names_and_users_are_bounded() -> None:
    event = pb.Event(
        workload=pb.WorkloadEvent(
            processes=[pb.GpuProcess(name="p" * 1000, workload=pb.Workload(id="j" * 1000, user="u\x00ser"))]
        )
    )
    clean_message(event)
    process = event.workload.processes[0]
    assert len(process.name) == 128 and len(process.workload.id) == 128
    assert process.workload.user == "user"
    assert clean_message(pb.Event(gpu_lost=pb.GpuLostEvent(reason="r" * 5000))) == 1
    lost = pb.Event(gpu_lost=pb.GpuLostEvent(reason="r" * 5000))
    clean_message(lost)
    assert len(lost.gpu_lost.reason) == DEFAULT_LIMIT
