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
# Each proto and the generated files kept from it (remote write has no service, so no _grpc module).
PROTOS: dict[str, tuple[str, ...]] = {
    PROTO: ("telemetry_pb2.py", "telemetry_pb2.pyi", "telemetry_pb2_grpc.py"),
    "protos/remote_write.proto": ("remote_write_pb2.py", "remote_write_pb2.pyi"),
}
GENERATED = tuple(name for names in PROTOS.values() for name in names)


def generate(root: Path, out_dir: Path) -> list[Path]:
    """Run protoc on each proto under ``root``; return the generated files placed in ``out_dir``."""
    from grpc_tools import protoc  # build-time tool, not a runtime dependency

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for proto, names in PROTOS.items():
        with tempfile.TemporaryDirectory() as scratch:
            args = [
                "protoc",
                f"-I{root}",
                f"--python_out={scratch}",
                f"--pyi_out={scratch}",
                f"--grpc_python_out={scratch}",
                str(root / proto),
            ]
            if protoc.main(args) != 0:
                raise RuntimeError(f"protoc failed on {root / proto}")
            for name in names:
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
