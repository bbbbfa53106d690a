"""The committed gRPC stubs are exactly what proto/generate.sh makes from the .proto today.

A stale stub means the wire API and the Python code disagree; regenerate with `make proto`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from services.rpc.clipspot.v1 import spotting_pb2, spotting_pb2_grpc

REPO = Path(__file__).resolve().parent.parent
STUB_DIR = Path("services/rpc")


def _generate(out_root: Path) -> None:
    env = {**os.environ, "PYTHON": sys.executable}
    subprocess.run(
        ["sh", str(REPO / "proto" / "generate.sh"), str(out_root)],
        check=True, cwd=REPO, env=env, capture_output=True, text=True,
    )


def _files(root: Path) -> dict[str, bytes]:
    base = root / STUB_DIR
    return {
        str(p.relative_to(base)): p.read_bytes()
        for p in sorted(base.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


def test_committed_stubs_match_a_fresh_generation(tmp_path: Path) -> None:
    _generate(tmp_path)
    fresh, committed = _files(tmp_path), _files(REPO)
    assert sorted(fresh) == sorted(committed), "stub files differ: run `make proto`"
    stale = [name for name in fresh if fresh[name] != committed[name]]
    assert not stale, f"stale generated stubs {stale}: run `make proto` (proto/generate.sh)"


def test_generation_is_reproducible(tmp_path: Path) -> None:
    _generate(tmp_path / "a")
    _generate(tmp_path / "b")
    assert _files(tmp_path / "a") == _files(tmp_path / "b")


def test_stubs_carry_the_api_names_other_components_rely_on() -> None:
    service = spotting_pb2.DESCRIPTOR.services_by_name["TextSpotting"]
    assert service.full_name == "clipspot.v1.TextSpotting"
    methods = {m.name: m for m in service.methods}
    assert set(methods) == {"StreamSpot", "SpotImage"}
    # Ray Serve's gRPC proxy registers the servicer through this exact dotted path.
    assert callable(spotting_pb2_grpc.add_TextSpottingServicer_to_server)
    assert spotting_pb2_grpc.__name__ == "services.rpc.clipspot.v1.spotting_pb2_grpc"
