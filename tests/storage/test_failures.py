"""A store that fails under a command says so in one line: read-only SQLite for real, the other causes as the
exceptions the libraries raise."""

from __future__ import annotations

import errno
import sqlite3

import optuna
import pytest
import sqlalchemy.exc

from errors import UserError
from storage import store_errors
from storage.failures import root_cause


@pytest.fixture
def read_only(tmp_path):
    """A real store, and an Optuna storage on it whose SQLite connection is read-only (mode=ro): every write
    fails inside SQLite itself, as on a read-only mount (tests run as root, where chmod stops nothing)."""
    path = tmp_path / "studies.db"
    url = f"sqlite:///{path}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    optuna.create_study(storage=url, study_name="a").add_trial(optuna.trial.create_trial(value=1.0))
    storage = optuna.storages.RDBStorage(
        f"sqlite:///file:{path}?mode=ro&uri=true", skip_table_creation=True, skip_compatibility_check=True
    )
    yield url, storage
    storage.engine.dispose()


@pytest.mark.parametrize("write", ["create", "attr", "trial"])
def test_read_only_sqlite_is_one_line(read_only, write):
    url, storage = read_only
    with pytest.raises(UserError) as e, store_errors(url):
        if write == "create":
            optuna.create_study(storage=storage, study_name="b")
        elif write == "attr":
            optuna.load_study(storage=storage, study_name="a").set_user_attr("x", 1)
        else:
            optuna.load_study(storage=storage, study_name="a").ask()
    assert str(e.value) == f"store {url} is read-only (OperationalError: attempt to write a readonly database)"


def test_reading_a_read_only_store_works(read_only):
    url, storage = read_only
    with store_errors(url):
        assert [t.value for t in optuna.load_study(storage=storage, study_name="a").trials] == [1.0]


def _chained(outer: Exception, inner: BaseException) -> Exception:
    try:
        try:
            raise inner
        except BaseException as e:
            raise outer from e
    except Exception as e:
        return e


@pytest.mark.parametrize(
    "exc, message",
    [
        (
            _chained(
                optuna.exceptions.StorageInternalError(
                    "An exception is raised during the commit. e.g. exceeding max length."
                ),
                sqlalchemy.exc.DataError("INSERT ...", {}, Exception("value too long for type varchar(512)\nx")),
            ),
            "store postgresql+psycopg://u:***@db/s: Exception: value too long for type varchar(512)",
        ),
        (
            optuna.exceptions.StorageInternalError("An exception is raised during the commit."),
            "store postgresql+psycopg://u:***@db/s: StorageInternalError: An exception is raised during the commit.",
        ),
        (
            OSError(errno.EROFS, "Read-only file system", "/mnt/j.log"),
            "store postgresql+psycopg://u:***@db/s is read-only (Read-only file system: /mnt/j.log)",
        ),
        (
            OSError(errno.ENOSPC, "No space left on device"),
            "store postgresql+psycopg://u:***@db/s: No space left on device",
        ),
        (
            sqlite3.DatabaseError("database disk image is malformed"),
            "store postgresql+psycopg://u:***@db/s: DatabaseError: database disk image is malformed",
        ),
        (
            sqlalchemy.exc.OperationalError(
                "SET ...", {}, Exception("cannot execute INSERT in a read-only transaction")
            ),
            "store postgresql+psycopg://u:***@db/s is read-only (Exception: cannot execute INSERT in a read-only "
            "transaction)",
        ),
    ],
)
def test_store_failures_become_one_line(exc, message):
    with pytest.raises(UserError) as e, store_errors("postgresql+psycopg://u:pw@db/s"):
        raise exc
    assert str(e.value) == message


@pytest.mark.parametrize(
    "exc",
    [ValueError("a bug"), KeyError("x"), UserError("already one line"), BrokenPipeError(32, "Broken pipe")],
)
def test_other_errors_pass_through(exc):
    """A closed stdout (`show NAME | head -1`) is no store error, though BrokenPipeError is an OSError."""
    with pytest.raises(type(exc)) as e, store_errors("sqlite:///s.db"):
        raise exc
    assert e.value is exc


def test_root_cause_ignores_implicit_context():
    try:
        try:
            raise KeyError("unrelated, being handled")
        except KeyError:
            raise OSError(errno.EACCES, "Permission denied", "/x") from None
    except OSError as e:
        assert root_cause(e) is e
