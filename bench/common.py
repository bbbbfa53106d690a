"""What every benchmark part shares: the machine, paths, timing and process statistics."""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
# The read-only datasets: $CLIPSPOT_SHARED_DATA, else ../shared/data beside the checkout, else the
# workplace's /work/shared/data (as tests/shared_data.py finds them; a clone may live elsewhere).
DATA = next((Path(p) for p in (os.environ.get("CLIPSPOT_SHARED_DATA"),
                               ROOT.parent / "shared" / "data", "/work/shared/data")
             if p and Path(p).is_dir()), ROOT.parent / "shared" / "data")
PEERS_PYTHON = ROOT / ".venv-peers" / "bin" / "python"
PEER_SPOT = ROOT / "bench" / "peers" / "peer_spot.py"
PRODUCT_PYTHON = Path(sys.executable)


def cpu_model() -> str:
    """The processor's name (speed figures differ several-fold between CPU kinds)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def machine() -> dict[str, Any]:
    """Recorded with every result file: numbers from different machines do not compare."""
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "load_average": load_average(),
        "gpu": "none lent this session (CPU only)",
        "time": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def peers_available() -> bool:
    return PEERS_PYTHON.exists()


def percentiles(values_ms: list[float]) -> dict[str, float]:
    if not values_ms:
        return {"p50_ms": 0.0, "p99_ms": 0.0}
    arr = np.asarray(values_ms)
    return {"p50_ms": round(float(np.percentile(arr, 50)), 1),
            "p99_ms": round(float(np.percentile(arr, 99)), 1)}


def peak_rss_mb() -> float:
    """This process's peak resident memory (Linux reports KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)


def rss_mb(pid: int) -> float:
    """Current resident memory of one process, from /proc (no psutil in the product venv)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except (OSError, ValueError):
        pass
    return 0.0


def descendants(pid: int) -> list[int]:
    """pid and every process below it (Ray's raylet and workers are our grandchildren)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        todo.extend(children.get(current, []))
    return out


def run_json(command: list[str], timeout_s: float) -> dict[str, Any]:
    """Run a worker that prints one JSON object as its last stdout line; keep its stderr."""
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout_s,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-5:]
        return {"error": f"exit {done.returncode}: {' | '.join(tail)}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1))


def log(message: str) -> None:
    """Progress on stderr, with the load average: every measurement says how busy we were."""
    load = "/".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"[bench {time.strftime('%H:%M:%S')} load {load}] {message}", file=sys.stderr,
          flush=True)


def scrape_counters(port: int) -> dict[str, float]:
    """A Prometheus /metrics page on loopback: each sample name summed over its label sets
    (streams, replicas, workers). Empty when nothing answers there."""
    import urllib.error
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            text = answer.read().decode()
    except (urllib.error.URLError, OSError):
        return {}
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
    return totals
