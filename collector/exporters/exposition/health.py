"""Why a GPU is not OK: one series per failing health check, from the agents' HealthChangeEvents."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

from collector.exporters.exposition.text import escape, header
from collector.store import HEALTH_NAMES
from protos import telemetry_pb2 as pb

__all__ = ["health_reasons_block"]

_NAME = "gpulse_gpu_health_reason"
_HELP = "1 for each health check failing on the GPU (check, and status warn or fail); absent once it passes."


def health_reasons_block(
    reasons: Mapping[int, Sequence[pb.HealthReason]], rows: npt.NDArray[np.int64], labels: Sequence[str]
) -> str:
    """Exposition text for the GPUs in ``rows``; empty when every GPU is OK."""
    lines = []
    for row in rows.tolist():
        for reason in reasons.get(row, ()):
            status = HEALTH_NAMES.get(int(reason.status), "unknown")
            lines.append(f'{_NAME}{{{labels[row]},check="{escape(reason.check)}",status="{status}"}} 1')
    return "\n".join([header(_NAME, "gauge", _HELP), *lines]) if lines else ""
