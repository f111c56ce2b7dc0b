"""What the cost model learned on this machine: per objective, how long studies took against their estimate.

`compare` estimates each study from a speed test (objectives.budget); once a study has run its whole budget, the
ratio actual / estimated is folded into a running geometric mean per (machine, objective) in a small JSON file
(`$STUDY_COSTS`, else `$XDG_CACHE_HOME/simclr-study/costs.json`, else `~/.cache/simclr-study/costs.json`), and the
next estimate on the same machine is multiplied by it. The machine is the CPU model, the torch thread count and
the runtime (device, precision), so a GPU run never corrects a CPU estimate.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from atomic import atomic_write

WEIGHT = 0.5  # of the newest measurement in the running (geometric) mean
RATIO_RANGE = (0.25, 4.0)  # a ratio outside this is a broken run (or clock), not a cost model to learn


def costs_path() -> Path:
    if os.environ.get("STUDY_COSTS"):
        return Path(os.environ["STUDY_COSTS"])
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "simclr-study" / "costs.json"


def machine_key(runtime_text: str, threads: int) -> str:
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        pass
    return f"{model or 'cpu'}; {threads} threads; {runtime_text}"


def _read(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}  # missing or damaged: start afresh (it only sharpens estimates)
    return data if isinstance(data, dict) else {}


def learned(machine: str, path: Path | None = None) -> dict[str, float]:
    """objective -> actual / estimated seconds on this machine ({} when nothing was measured yet)."""
    entry = _read(path or costs_path()).get(machine, {})
    return {k: float(v["ratio"]) for k, v in entry.items() if isinstance(v, dict) and "ratio" in v}


def learn(machine: str, measured: dict[str, tuple[float, float]], path: Path | None = None) -> dict[str, float]:
    """Fold measurements (objective -> (estimated, actual) seconds, summed over its studies) into the file;
    returns the new ratios. A file that cannot be written is left alone (estimates stay as they were)."""
    path = path or costs_path()
    data = _read(path)
    entry = data.setdefault(machine, {})
    for objective, (estimated, actual) in measured.items():
        if not (estimated > 0 and actual > 0):
            continue
        ratio = min(max(actual / estimated, RATIO_RANGE[0]), RATIO_RANGE[1])
        old = entry.get(objective, {})
        if "ratio" in old:  # the estimate was already corrected by old["ratio"]: fold in the corrected ratio
            ratio = math.exp((1 - WEIGHT) * math.log(old["ratio"]) + WEIGHT * math.log(old["ratio"] * ratio))
        entry[objective] = {"ratio": ratio, "runs": int(old.get("runs", 0)) + 1}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda f: f.write(json.dumps(data, indent=1).encode()))
    except OSError:
        pass
    return {k: v["ratio"] for k, v in entry.items()}
