"""Regenerate protos/lockgate/v1/*_pb2*.py from the .proto files; `--check` fails on a diff.

The generated modules are committed so that installing Lockgate needs no code generator; this
script is the only thing that writes them.
"""

from __future__ import annotations

import re
import shutil
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "protos"
OUT_DIR = PROTO_DIR / "lockgate" / "v1"


def generate(into: Path) -> list[Path]:
    protos = sorted(OUT_DIR.glob("*.proto"))
    include = Path(protoc.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{PROTO_DIR}",
        f"-I{include}",
        f"--python_out={into}",
        f"--grpc_python_out={into}",
        f"--pyi_out={into}",
        *[str(p.relative_to(PROTO_DIR)) for p in protos],
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    produced = sorted((into / "lockgate" / "v1").glob("*_pb2*.py*"))
    for path in produced:
        # Generated code imports `lockgate.v1.x_pb2`; our package root is `protos`.
        text = path.read_text()
        text = re.sub(
            r"^from lockgate\.v1 import", "from protos.lockgate.v1 import", text, flags=re.M
        )
        text = re.sub(r"^import lockgate\.v1\.", "import protos.lockgate.v1.", text, flags=re.M)
        path.write_text(text)
    return produced


def main() -> int:
    check = "--check" in sys.argv[1:]
    with tempfile.TemporaryDirectory() as tmp:
        produced = generate(Path(tmp))
        stale = []
        for path in produced:
            target = OUT_DIR / path.name
            if not target.exists() or target.read_bytes() != path.read_bytes():
                stale.append(path.name)
                if not check:
                    shutil.copyfile(path, target)
    if check and stale:
        print(
            f"generated modules are stale: {', '.join(stale)}; run `make protos`", file=sys.stderr
        )
        return 1
    if not check:
        print(f"regenerated {len(produced)} modules" if stale else "generated modules up to date")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
