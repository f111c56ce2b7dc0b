"""Opening a store by URL (SQLite, any SQLAlchemy URL, a journal file) and deleting a study with its artifacts.

Safety first: a command that only reads never creates or changes a store. Before SQLAlchemy or Optuna touch a
SQLite file we look at it ourselves (exists? SQLite header? Optuna's tables?), because both happily create a
missing file or add Optuna's tables to somebody else's database. Server databases get the same table check.

RDB stores get a heartbeat: a worker killed mid-trial leaves a RUNNING trial whose heartbeat stops; the next
worker that starts a trial fails it and `RetryHeartbeatStaleTrialCallback` enqueues a retry (a WAITING trial
with the same params and user attrs, so the retry finds the checkpoint artifact id of its predecessor); the
trial's "error" and a printed line say so (storage/recovery.py).
Journal files have no heartbeat in Optuna (DESIGN.md, "Pitfalls").

URLs are parsed and shown by `storage/urls.py`, artifact files kept by `storage/artifacts.py`; failures of an
opened store become one line in `storage/failures.py`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sqlite3
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
from optuna.artifacts import FileSystemArtifactStore

from errors import UserError, first_line
from storage import schema
from storage.artifacts import ARTIFACT_ATTR_PREFIX, remove_quietly
from storage.optuna_private import MarkingRDBStorage, study_summaries
from storage.recovery import RetryLostTrials, mark_lost
from storage.urls import (
    check_dialect,
    display_url,
    journal_path,
    resolve_url,
    sqlite_path,
)

_SQLITE_MAGIC = b"SQLite format 3\x00"
_OPTUNA_TABLES = {"studies", "trials", "version_info"}


@dataclasses.dataclass(frozen=True)
class Heartbeat:
    interval: int = 60  # seconds between a running trial's heartbeats
    grace_period: int = 120  # a RUNNING trial silent this long is stale (failed and retried)
    max_retry: int = 3  # retries of one trial after its workers died

    def __post_init__(self) -> None:
        if self.interval < 1 or self.grace_period <= self.interval or self.max_retry < 0:
            raise UserError("need --heartbeat >= 1, --grace-period > --heartbeat and --max-retry >= 0")


def _check_sqlite_file(path: Path, url: str, create: bool) -> None:
    """Refuse what is not (and, unless creating, what is not yet) an Optuna SQLite store, touching nothing."""
    if not path.exists():
        if not create:
            raise UserError(f"no study store at {path} (create a study first: study.py create --storage {url})")
        if not path.parent.is_dir():
            raise UserError(f"cannot create store {path}: directory {path.parent} does not exist")
        return
    if not path.is_file():
        raise UserError(f"store {path} is not a file")
    with open(path, "rb") as f:
        header = f.read(len(_SQLITE_MAGIC))
    if not header:
        if create:
            return  # an empty file is an empty SQLite database
        raise UserError(f"store {path} is an empty file, not a study database")
    if header != _SQLITE_MAGIC:
        raise UserError(f"{path} is not a study database (not an SQLite file)")
    try:
        con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            tables = {row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        finally:
            con.close()
    except sqlite3.Error as e:
        raise UserError(f"{path} is not a readable SQLite database ({first_line(e)})") from None
    if not _OPTUNA_TABLES <= tables and (tables or not create):
        raise UserError(f"{path} is an SQLite database but not a study database (no Optuna tables)")


def _engine_kwargs(url: str) -> dict[str, Any]:
    if url.startswith("sqlite"):
        return {"connect_args": {"timeout": 60}}  # busy timeout: several local workers share one file
    if url.startswith("postgresql"):
        return {"connect_args": {"connect_timeout": 10}, "pool_pre_ping": True}
    return {}


def _server_has_tables(url: str) -> bool:
    """Whether a server database holds Optuna's tables (looking only)."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(url, **_engine_kwargs(url))
    try:
        tables = set(sqlalchemy.inspect(engine).get_table_names())
    finally:
        engine.dispose()
    return _OPTUNA_TABLES <= tables


def _check_server_tables(url: str, create: bool) -> None:
    """Reading a server database that holds no Optuna tables must not create them."""
    if not create and not _server_has_tables(url):
        raise UserError(f"no study store at {display_url(url)} (create a study first)")


def _check_rdb(url: str, create: bool) -> None:
    """The checks before SQLAlchemy or Optuna touch a database URL (see the module docstring)."""
    if "://" not in url:
        raise UserError(
            f"storage {url!r} is not a URL; use sqlite:///PATH, postgresql+psycopg://USER@HOST/DB or journal:PATH"
        )
    check_dialect(url)
    path = sqlite_path(url)
    if path is not None:
        _check_sqlite_file(path, url, create)
    elif url.startswith("sqlite"):  # a store that vanishes when the command ends, or a URI we do not check
        raise UserError(f"storage {url!r}: in-memory and file: URI SQLite stores are not supported; use sqlite:///PATH")
    else:
        _check_server_tables(url, create)


_CREATE_ATTEMPTS = 5  # opening a store that other workers are creating at the same moment
_CREATED_BY_ANOTHER = ("unique", "already exists")  # how that race reads (SQLite, PostgreSQL)


def _open_rdb(url: str, create: bool, heartbeat: Heartbeat, read_only: bool) -> optuna.storages.RDBStorage:
    _check_rdb(url, create)
    if read_only:
        # The tables were just seen to exist, so Optuna's CREATE TABLE pass and its schema check (which reads
        # alembic's migration scripts) are skipped; reading needs no heartbeat, which only writes.
        return optuna.storages.RDBStorage(
            url, engine_kwargs=_engine_kwargs(url), skip_compatibility_check=True, skip_table_creation=True
        )
    for attempt in range(_CREATE_ATTEMPTS):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # "experimental" heartbeat
                storage = MarkingRDBStorage(
                    url,
                    engine_kwargs=_engine_kwargs(url),
                    heartbeat_interval=heartbeat.interval,
                    grace_period=heartbeat.grace_period,
                    heartbeat_stale_trial_callback=RetryLostTrials(heartbeat.max_retry),
                )
            break
        except Exception as e:  # workers creating one new store at once: one creates the tables, the others find them
            if attempt + 1 == _CREATE_ATTEMPTS or not any(m in str(e).lower() for m in _CREATED_BY_ANOTHER):
                raise
            time.sleep(0.2 * (attempt + 1))
    storage.on_stale = mark_lost  # a lost worker's trial says so (storage/recovery.py)
    return storage


def _open_journal(path: Path, create: bool) -> optuna.storages.BaseStorage:
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    if not path.exists():
        if not create:
            raise UserError(f"no study store at journal file {path} (create a study first)")
        if not path.parent.is_dir():
            raise UserError(f"cannot create journal {path}: directory {path.parent} does not exist")
    elif not path.is_file():
        raise UserError(f"journal {path} is not a file")
    return JournalStorage(JournalFileBackend(str(path)))


def open_storage(
    url: str | None = None, *, create: bool = False, heartbeat: Heartbeat | None = None, read_only: bool = False
) -> optuna.storages.BaseStorage:
    """The store at `url` (see resolve_url). Only `create=True` may create a new store.

    URLs: sqlite:///PATH, postgresql+psycopg://USER@HOST:PORT/DB (any SQLAlchemy URL Optuna accepts), or
    journal:PATH for Optuna's journal file. `read_only=True` (list, show, report) opens an existing RDB store
    without Optuna's table creation, schema check and heartbeat: the commands that only read start faster.
    UserError (one line) when it cannot be opened or is not a store.
    """
    if create and read_only:
        raise ValueError("open_storage: create and read_only exclude each other")
    url = resolve_url(url)
    with _opening(url):
        jpath = journal_path(url)
        if jpath is not None:
            return _open_journal(jpath, create)
        return _open_rdb(url, create, heartbeat or Heartbeat(), read_only)


def read_summaries(url: str | None = None) -> list[dict[str, Any]] | None:
    """Per-study trial counts and values of the store at `url` (optuna_private.study_summaries), read with a bare
    SQLAlchemy engine: no Optuna storage is built (its constructor imports alembic and queries the version
    tables, most of what `study.py list` would spend). The same checks as open_storage; nothing is created.
    None for journal stores and for tables at a revision the queries were not written for.
    """
    url = resolve_url(url)
    if journal_path(url) is not None:
        return None
    with _opening(url):
        _check_rdb(url, create=False)
        import sqlalchemy

        engine = sqlalchemy.create_engine(url, **_engine_kwargs(url))
        try:
            return study_summaries(engine)
        finally:
            engine.dispose()


@contextlib.contextmanager
def _opening(url: str) -> Iterator[None]:
    """What goes wrong while a store is opened, as one UserError line."""
    try:
        yield
    except UserError:
        raise
    except Exception as e:  # driver missing, server down, bad URL, incompatible schema, corrupt journal
        raise UserError(f"cannot open store {display_url(url)}: {type(e).__name__}: {first_line(e)}") from None


def store_exists(url: str | None = None) -> bool:
    """Whether a store is at `url`, looking without creating anything (UserError if something else is there). A
    server database is one once it holds Optuna's tables (open_storage(create=True) adds them to an empty one)."""
    url = resolve_url(url)
    path = sqlite_path(url) or journal_path(url)
    if path is None:
        with _opening(url):
            _check_rdb(url, create=True)
            return _server_has_tables(url)
    if not path.exists():
        return False
    if sqlite_path(url) is not None:
        _check_sqlite_file(path, url, create=True)
    return True


def study_names(storage: optuna.storages.BaseStorage) -> list[str]:
    return [s.study_name for s in storage.get_all_studies()]


def load_study(storage: optuna.storages.BaseStorage, name: str, **kwargs: Any) -> optuna.Study:
    """optuna.load_study, with UserError for a study that is not there."""
    try:
        return optuna.load_study(study_name=name, storage=storage, **kwargs)
    except KeyError:
        raise _no_such_study(storage, name) from None


def find_study_id(storage: optuna.storages.BaseStorage, name: str) -> int:
    """The storage id of study `name`; UserError naming the studies there are when it is not in the store."""
    try:
        return storage.get_study_id_from_name(name)
    except KeyError:
        raise _no_such_study(storage, name) from None


def study_spec(storage: optuna.storages.BaseStorage, name: str) -> schema.StudySpec:
    """The spec stored in study `name`'s attrs. UserError when the study is not in the store (naming the studies
    there are, as find_study_id) or its attrs are not a spec this code reads (the SchemaError's message, which
    names the study); a caller that takes a missing study as "none" checks study_names first."""
    attrs = storage.get_study_user_attrs(find_study_id(storage, name))
    try:
        return schema.read_spec(attrs, name)
    except schema.SchemaError as e:
        raise UserError(str(e)) from None


def _no_such_study(storage: optuna.storages.BaseStorage, name: str) -> UserError:
    known = study_names(storage)
    hint = f"; studies: {', '.join(known[:20])}" if known else "; the store has no studies"
    return UserError(f"no study named {name!r}{hint}")


def artifact_ids(storage: optuna.storages.BaseStorage, study_id: int) -> set[str]:
    """Every artifact a study (and its trials) points at: listed ones and unlisted resume checkpoints."""
    ids = {k.split(":", 1)[1] for k in storage.get_study_system_attrs(study_id) if k.startswith(ARTIFACT_ATTR_PREFIX)}
    for trial in storage.get_all_trials(study_id, deepcopy=False):
        ids.update(k.split(":", 1)[1] for k in trial.system_attrs if k.startswith(ARTIFACT_ATTR_PREFIX))
        checkpoint = trial.user_attrs.get(schema.CHECKPOINT)
        if isinstance(checkpoint, str) and checkpoint:
            ids.add(checkpoint)
    return ids


def delete_study(storage: optuna.storages.BaseStorage, name: str, artifacts: FileSystemArtifactStore | None) -> int:
    """Delete study `name` from the store, then its artifact files; returns how many files were removed.

    The ids are collected before the study goes (they live in its attrs); the files go after, so a failure in
    between leaves unreferenced files, never a study that points at missing ones. `artifacts=None` (no artifact
    directory) removes none.
    """
    study_id = find_study_id(storage, name)
    ids = artifact_ids(storage, study_id)
    storage.delete_study(study_id)
    if artifacts is None:
        return 0
    return sum(remove_quietly(artifacts, artifact_id) for artifact_id in sorted(ids))
