"""The one place that touches Optuna's private attributes. Each has no public equivalent in Optuna 5:

- `Trial._trial_id`: a live trial's storage id, needed to read its system attrs (the heartbeat's retry history,
  the grid sampler's grid id) through the storage API; `Trial` exposes neither the id nor those attrs.
- `Study._study_id`, `FrozenStudy._study_id`: the storage id of a study, needed for the storage API calls
  (`get_all_trials(study_id)`); `FrozenStudy` has no public id, and the name lookup costs a query per study.
- `_CachedStorage._backend`: Optuna wraps an RDBStorage in a cache layer that has no `url`; the report shows
  the store's URL (password masked), which only the wrapped RDBStorage knows.
"""

from __future__ import annotations

from typing import Any

import optuna


def trial_id(trial: optuna.Trial) -> int:
    return trial._trial_id


def study_id(study: optuna.Study | Any) -> int:
    """The storage id of an `optuna.Study` or a `FrozenStudy` (both keep it as `_study_id`)."""
    return study._study_id


def storage_url(storage: optuna.storages.BaseStorage) -> str | None:
    """The URL of an RDB storage (through Optuna's cache wrapper), None for other storages."""
    backend = getattr(storage, "_backend", storage)
    url = getattr(backend, "url", None)
    return str(url) if url else None
