from __future__ import annotations

from pathlib import Path

from protos.generate import GENERATED, generate

ROOT = Path(__file__).resolve().parents[2]


def test_regenerating_the_protos_changes_nothing(tmp_path: Path) -> None:
    written = generate(ROOT, tmp_path)
    assert [p.name for p in written] == list(GENERATED)
    for path in written:
        committed = ROOT / "protos" / path.name
        assert path.read_bytes() == committed.read_bytes(), f"{committed} is stale: run python -m protos.generate"
