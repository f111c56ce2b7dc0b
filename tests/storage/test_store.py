"""Opening a store: read-only opening skips Optuna's table creation, URLs that SQLAlchemy refuses get a hint,
passwords never print, and deleting a study takes exactly its artifacts with it."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import optuna
import pytest

from errors import UserError
from storage import delete_study, display_url, open_artifacts, open_storage, schema
from storage.artifacts import upload, write_unlisted
from storage.urls import check_dialect


@pytest.fixture
def url(tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    optuna.create_study(storage=url, study_name="a").add_trial(optuna.trial.create_trial(value=1.0))
    return url


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as con:
        return {row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def test_read_only_open_creates_no_table(url, tmp_path):
    """A table Optuna would add (here: dropped by hand) stays missing when read-only, and comes back otherwise."""
    path = tmp_path / "studies.db"
    with sqlite3.connect(path) as con:
        con.execute("DROP TABLE trial_heartbeats")
    before = digest(path)
    storage = open_storage(url, read_only=True)
    assert [s.study_name for s in storage.get_all_studies()] == ["a"]
    assert len(storage.get_all_trials(storage.get_study_id_from_name("a"))) == 1
    storage.engine.dispose()
    assert "trial_heartbeats" not in tables(path) and digest(path) == before
    open_storage(url).engine.dispose()
    assert "trial_heartbeats" in tables(path)


@pytest.mark.parametrize("kind", ["missing", "not-optuna"])
def test_read_only_open_never_creates(tmp_path, kind):
    path = tmp_path / "s.db"
    if kind == "not-optuna":
        with sqlite3.connect(path) as con:
            con.execute("CREATE TABLE mine (x)")
    before = path.exists() and digest(path)
    with pytest.raises(UserError, match="no study store|not a study database"):
        open_storage(f"sqlite:///{path}", read_only=True)
    assert (path.exists() and digest(path)) == before


def test_create_and_read_only_exclude_each_other(url):
    with pytest.raises(ValueError):
        open_storage(url, create=True, read_only=True)


@pytest.mark.parametrize("url", ["postgres://alice:pw@db/studies", "postgres+psycopg://alice@db/studies"])
def test_postgres_alias_is_one_line_with_the_hint(url):
    with pytest.raises(UserError) as e:
        open_storage(url)
    message = str(e.value)
    assert "\n" not in message and "postgresql+psycopg://" in message and "pw" not in message
    with pytest.raises(UserError, match="postgresql\\+psycopg://"):
        check_dialect(url)


@pytest.mark.parametrize(
    "url, shown",
    [
        ("postgresql+psycopg://alice:s3cret@db:5432/studies", "postgresql+psycopg://alice:***@db:5432/studies"),
        ("sqlite:///studies.db", "sqlite:///studies.db"),
        ("journal:/tmp/s.log", "journal:/tmp/s.log"),
    ],
)
def test_display_url_hides_password(url, shown):
    assert display_url(url) == shown


def _with_checkpoints(storage, name: str, artifacts, tmp_path: Path) -> set[str]:
    study = optuna.create_study(storage=storage, study_name=name)
    ids = set()
    for k in range(2):
        trial = study.ask()
        source = tmp_path / f"{name}-{k}.pt"
        source.write_bytes(b"weights")
        ids.add(upload(artifacts, trial, source))  # listed: trial system attr
        ids.add(unlisted := write_unlisted(artifacts, source))
        trial.set_user_attr(schema.CHECKPOINT, unlisted)  # unlisted: found through the user attr
        study.tell(trial, 1.0)
    return ids


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")  # ask/tell by hand on a heartbeat store
def test_delete_study_takes_its_artifacts_only(url, tmp_path):
    storage = open_storage(url)
    artifacts = open_artifacts(url)
    mine = _with_checkpoints(storage, "mine", artifacts, tmp_path)
    other = _with_checkpoints(storage, "other", artifacts, tmp_path)
    (artifacts.base_path / sorted(mine)[0]).unlink()  # already gone: not counted
    assert delete_study(storage, "mine", artifacts) == len(mine) - 1
    assert sorted(s.study_name for s in storage.get_all_studies()) == ["a", "other"]
    assert {p.name for p in artifacts.base_path.iterdir()} == other
    assert delete_study(storage, "other", None) == 0 and len(list(artifacts.base_path.iterdir())) == 4
    with pytest.raises(UserError, match="no study named 'nope'; studies: a"):
        delete_study(storage, "nope", artifacts)
