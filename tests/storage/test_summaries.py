"""The aggregate queries behind `study.py list` (storage.optuna_private.study_summaries) agree with the storage
API on studies of every shape, and step aside when the tables are not the layout they were written for."""

from __future__ import annotations

import math

import optuna
import pytest
from optuna.trial import TrialState, create_trial

from errors import UserError
from reports import study_list
from storage import open_storage, optuna_private
from storage.store import read_summaries


def fill(storage) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    ours = optuna.create_study(storage=storage, study_name="ours", direction="maximize")
    for key, value in {"objective": "simclr", "preset": "smoke", "role": "simclr_scale", "schema": 1}.items():
        ours.set_user_attr(key, value)
    ours.add_trials([create_trial(value=v) for v in (1.0, 3.0, 2.0, 3.0)])  # a tie: the lower number wins
    ours.add_trials([create_trial(state=s) for s in (TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING)])
    foreign = optuna.create_study(storage=storage, study_name="foreign-min", direction="minimize")
    foreign.add_trials([create_trial(value=v) for v in (3.0, 1.0, math.inf, 2.0)])
    infinite = optuna.create_study(storage=storage, study_name="inf-max", direction="maximize")
    infinite.add_trials([create_trial(value=v) for v in (math.inf, 2.0, -math.inf)])
    multi = optuna.create_study(storage=storage, study_name="multi", directions=["minimize", "maximize"])
    multi.add_trials([create_trial(values=[v, -v]) for v in (2.0, 1.0)])
    optuna.create_study(storage=storage, study_name="empty")


EXPECTED = {
    "ours": {
        "name": "ours",
        "objective": "simclr",
        "preset": "smoke",
        "role": "simclr_scale",
        "trials": 7,
        "states": {"COMPLETE": 4, "FAIL": 1, "PRUNED": 1, "RUNNING": 1},
        "best_value": 3.0,
        "best_trial": 1,
    },
    "foreign-min": {
        "name": "foreign-min",
        "objective": "",
        "preset": "",
        "role": "",
        "trials": 4,
        "states": {"COMPLETE": 4},
        "best_value": 1.0,
        "best_trial": 1,
    },
    "inf-max": {
        "name": "inf-max",
        "objective": "",
        "preset": "",
        "role": "",
        "trials": 3,
        "states": {"COMPLETE": 3},
        "best_value": 2.0,
        "best_trial": 1,
    },  # finite values only
    "multi": {
        "name": "multi",
        "objective": "",
        "preset": "",
        "role": "",
        "trials": 2,
        "states": {"COMPLETE": 2},
        "best_value": 1.0,
        "best_trial": 1,
    },  # by the first objective
    "empty": {
        "name": "empty",
        "objective": "",
        "preset": "",
        "role": "",
        "trials": 0,
        "states": {},
        "best_value": None,
        "best_trial": None,
    },
}


@pytest.fixture(scope="module")
def url(tmp_path_factory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('summaries') / 'studies.db'}"
    fill(url)
    return url


def test_queries_read_what_the_api_reads(url, monkeypatch):
    fast_url = study_list(url)  # a bare engine, no Optuna storage built
    storage = open_storage(url, read_only=True)
    fast_storage = study_list(storage)
    assert optuna_private.study_summaries(storage) is not None and read_summaries(url) is not None
    monkeypatch.setattr(optuna_private, "SUMMARY_REVISIONS", ())  # an unknown layout: the public API
    assert optuna_private.study_summaries(storage) is None and read_summaries(url) is None
    api = study_list(url)
    assert fast_url == fast_storage == api == list(EXPECTED.values())


def test_journal_and_memory_stores_use_the_api(tmp_path):
    journal = f"journal:{tmp_path / 'j.log'}"
    fill(open_storage(journal, create=True))
    assert read_summaries(journal) is None
    assert study_list(journal) == list(EXPECTED.values())
    memory = optuna.storages.InMemoryStorage()
    fill(memory)
    assert optuna_private.study_summaries(memory) is None and study_list(memory) == list(EXPECTED.values())


def test_summaries_never_create_a_store(tmp_path):
    with pytest.raises(UserError, match="no study store at"):
        study_list(f"sqlite:///{tmp_path / 'missing.db'}")
    assert list(tmp_path.iterdir()) == []
