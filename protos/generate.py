"""Regenerate the committed protobuf modules: ``python -m protos.generate [OUT_DIR]``.

The generated files are committed so that installing gpulse needs no protoc; a test runs this
into a scratch directory and checks that the result equals what is committed.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

PROTO = "protos/telemetry.proto"
GENERATED = ("telemetry_pb2.py", "telemetry_pb2.pyi", "telemetry_pb2_grpc.py")


def generate(root: Path, out_dir: Path) -> list[Path]:
    """Run protoc on the proto under ``root``; return the generated files placed in ``out_dir``."""
    from grpc_tools import protoc  # build-time tool, not a runtime dependency

    with tempfile.TemporaryDirectory() as scratch:
        args = [
            "protoc",
            f"-I{root}",
            f"--python_out={scratch}",
            f"--pyi_out={scratch}",
            f"--grpc_python_out={scratch}",
            str(root / PROTO),
        ]
        if protoc.main(args) != 0:
            raise RuntimeError(f"protoc failed on {root / PROTO}")
        out_dir.mkdir(parents=True, exist_ok=True)
        written = []
        for name in GENERATED:
            target = out_dir / name
            shutil.copyfile(Path(scratch) / "protos" / name, target)
            written.append(target)
        return written


def main() -> None:
    root = Path(__file__).resolve().parent.parent
    out_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else root / "protos"
    for path in generate(root, out_dir):
        print(path)


if __name__ == "__main__":
    main()
