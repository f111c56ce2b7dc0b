"""What `study.py list` and `show` print: one row per study of the store, and one study in full (plain data).

The `--json` output is these dicts through `json_safe`; `reports/text.py` formats them for the terminal. Both
respect each study's direction: the best trial of a study made with plain Optuna to minimize is its lowest.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from typing import Any

from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from reports.rows import StudyData
from storage import find_study_id, open_storage, schema
from storage.optuna_private import study_id, study_summaries
from storage.store import read_summaries


def study_list(storage: str | BaseStorage) -> list[dict[str, Any]]:
    """One row per study: name, objective, preset, role (our attrs; "" when absent), trials, states
    ({state: count}, sorted), best_value and best_trial (None without a complete trial).

    `storage` is a URL or an opened storage. RDB stores are summarized with a few aggregate queries (given a URL,
    without building an Optuna storage at all: `storage.store.read_summaries`); journal and in-memory stores, and
    tables at an unknown revision, through the storage API, one `get_all_trials` per study.
    """
    summaries = read_summaries(storage) if isinstance(storage, str) else study_summaries(storage)
    if summaries is None:
        storage = open_storage(storage, read_only=True) if isinstance(storage, str) else storage
        summaries = [_summary(storage, frozen) for frozen in storage.get_all_studies()]
    return [_list_row(summary) for summary in summaries]


def _summary(storage: BaseStorage, frozen: Any) -> dict[str, Any]:
    """What `study_summaries` reads, through the public API (journal and in-memory stores)."""
    trials = storage.get_all_trials(study_id(frozen), deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.values and math.isfinite(t.values[0])]
    return {
        "name": frozen.study_name,
        "direction": frozen.directions[0].name.lower(),
        "user_attrs": dict(frozen.user_attrs),
        "states": dict(Counter(t.state.name for t in trials)),
        "values": [(t.number, t.values[0]) for t in complete],
    }


def _list_row(summary: dict[str, Any]) -> dict[str, Any]:
    attrs, states = summary["user_attrs"], summary["states"]
    sign = 1 if summary["direction"] == "minimize" else -1
    best = min(summary["values"], key=lambda nv: (sign * nv[1], nv[0]), default=None)  # lowest number on ties
    return {
        "name": summary["name"],
        "objective": attrs.get(schema.OBJECTIVE, ""),
        "preset": attrs.get(schema.PRESET, ""),
        "role": attrs.get(schema.ROLE, ""),
        "trials": sum(states.values()),
        "states": {state: states[state] for state in sorted(states)},
        "best_value": None if best is None else best[1],
        "best_trial": None if best is None else best[0],
    }


def study_details(storage: BaseStorage, name: str) -> dict[str, Any]:
    """Study `name` in full: direction, our attrs (JSON ones decoded; None where absent), all user attrs, state
    counts, the best trial (number, value, params) by the study's direction, and every trial's row
    (storage.schema.trial_row). UserError when there is no such study."""
    sid = find_study_id(storage, name)
    attrs = storage.get_study_user_attrs(sid)
    trials: list[FrozenTrial] = storage.get_all_trials(sid, deepcopy=False)
    study = StudyData(name, attrs, storage.get_study_directions(sid)[0].name.lower(), trials)
    best = study.best()
    states = Counter(t.state.name for t in trials)
    return {
        "name": name,
        "direction": study.direction,
        "objective": attrs.get(schema.OBJECTIVE),
        "preset": attrs.get(schema.PRESET),
        "role": attrs.get(schema.ROLE),
        "comparison": attrs.get(schema.COMPARISON),
        "encoder": attrs.get(schema.ENCODER),
        "schema": attrs.get(schema.SCHEMA),
        **decoded_attrs(attrs),
        "user_attrs": attrs,
        "n_trials": len(trials),
        "states": {state: states[state] for state in sorted(states)},
        "best_trial": None
        if best is None
        else {"number": best.number, "value": best.values[0], "params": dict(best.params)},
        "trials": [schema.trial_row(t) for t in trials],
    }


def decoded_attrs(attrs: dict[str, Any]) -> dict[str, Any]:
    """config, space, sampler and pruner decoded from their JSON attrs; None where absent or unreadable (a study
    not made by study.py). The space maps each name to {"name": distribution class, "attributes": {...}}."""
    out: dict[str, Any] = {}
    for key in (schema.CONFIG, schema.SPACE, schema.SAMPLER, schema.PRUNER):
        try:
            out[key] = json.loads(attrs[key])
        except (KeyError, TypeError, ValueError):
            out[key] = None
    if isinstance(out[schema.SPACE], dict):  # {name: distribution_to_json string} -> {name: {...}}
        try:
            out[schema.SPACE] = {k: json.loads(v) for k, v in out[schema.SPACE].items()}
        except (TypeError, ValueError):
            pass
    return out
