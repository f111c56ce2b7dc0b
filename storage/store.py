"""Opening a store by URL (SQLite, any SQLAlchemy URL, a journal file) and its artifact directory.

Safety first: a command that only reads never creates or changes a store. Before SQLAlchemy or Optuna touch a
SQLite file we look at it ourselves (exists? SQLite header? Optuna's tables?), because both happily create a
missing file or add Optuna's tables to somebody else's database. Server databases get the same table check.

RDB stores get a heartbeat: a worker killed mid-trial leaves a RUNNING trial whose heartbeat stops; the next
worker that starts a trial fails it and `RetryHeartbeatStaleTrialCallback` enqueues a retry (a WAITING trial
with the same params and user attrs, so the retry finds the checkpoint artifact id of its predecessor).
Journal files have no heartbeat in Optuna (DESIGN.md, "Pitfalls").
"""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
import uuid
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.artifacts import ArtifactMeta, FileSystemArtifactStore
from optuna.artifacts.exceptions import ArtifactNotFound

from errors import UserError

DEFAULT_URL = "sqlite:///studies.db"
ENV_STORAGE = "STUDY_STORAGE"
ENV_ARTIFACTS = "STUDY_ARTIFACTS"
JOURNAL_PREFIX = "journal:"
_SQLITE_MAGIC = b"SQLite format 3\x00"
_OPTUNA_TABLES = {"studies", "trials", "version_info"}
_ARTIFACT_ATTR_PREFIX = "artifacts:"  # what optuna.artifacts.upload_artifact and the dashboard use


@dataclasses.dataclass(frozen=True)
class Heartbeat:
    interval: int = 60  # seconds between a running trial's heartbeats
    grace_period: int = 120  # a RUNNING trial silent this long is stale (failed and retried)
    max_retry: int = 3  # retries of one trial after its workers died


def resolve_url(url: str | None = None) -> str:
    """--storage URL, else $STUDY_STORAGE, else sqlite:///studies.db (in the working directory)."""
    return url or os.environ.get(ENV_STORAGE) or DEFAULT_URL


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0][:300] if lines else type(e).__name__


def display_url(url: str) -> str:
    """The URL with any password hidden, for messages."""
    if url.startswith(JOURNAL_PREFIX) or "://" not in url:
        return url
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1]


def sqlite_path(url: str) -> Path | None:
    """The file of a sqlite:/// URL (None for other URLs and in-memory databases)."""
    if not url.startswith("sqlite:"):
        return None
    from sqlalchemy.engine import make_url

    try:
        database = make_url(url).database
    except Exception as e:
        raise UserError(f"storage URL {url!r} cannot be parsed ({_first_line(e)})") from None
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def journal_path(url: str) -> Path | None:
    return Path(url[len(JOURNAL_PREFIX) :]) if url.startswith(JOURNAL_PREFIX) else None


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
        raise UserError(f"{path} is not a readable SQLite database ({_first_line(e)})") from None
    if not _OPTUNA_TABLES <= tables and (tables or not create):
        raise UserError(f"{path} is an SQLite database but not a study database (no Optuna tables)")


def _engine_kwargs(url: str) -> dict[str, Any]:
    if url.startswith("sqlite"):
        return {"connect_args": {"timeout": 60}}  # busy timeout: several local workers share one file
    if url.startswith("postgresql"):
        return {"connect_args": {"connect_timeout": 10}, "pool_pre_ping": True}
    return {}


def _check_server_tables(url: str, create: bool) -> None:
    """Reading a server database that holds no Optuna tables must not create them."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(url, **_engine_kwargs(url))
    try:
        tables = set(sqlalchemy.inspect(engine).get_table_names())
    finally:
        engine.dispose()
    if not create and not _OPTUNA_TABLES <= tables:
        raise UserError(f"no study store at {display_url(url)} (create a study first)")


def _open_rdb(url: str, create: bool, heartbeat: Heartbeat) -> optuna.storages.RDBStorage:
    path = sqlite_path(url)
    if path is not None:
        _check_sqlite_file(path, url, create)
    elif url.startswith("sqlite"):  # a store that vanishes when the command ends, or a URI we do not check
        raise UserError(f"storage {url!r}: in-memory and file: URI SQLite stores are not supported; use sqlite:///PATH")
    else:
        _check_server_tables(url, create)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeat_interval is "experimental"
        return optuna.storages.RDBStorage(
            url,
            engine_kwargs=_engine_kwargs(url),
            heartbeat_interval=heartbeat.interval,
            grace_period=heartbeat.grace_period,
            heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                max_retry=heartbeat.max_retry
            ),
        )


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
    url: str | None = None, *, create: bool = False, heartbeat: Heartbeat | None = None
) -> optuna.storages.BaseStorage:
    """The store at `url` (see resolve_url). Only `create=True` may create a new store.

    URLs: sqlite:///PATH, postgresql+psycopg://USER@HOST:PORT/DB (any SQLAlchemy URL Optuna accepts), or
    journal:PATH for Optuna's journal file. UserError (one line) when it cannot be opened or is not a store.
    """
    url = resolve_url(url)
    heartbeat = heartbeat or Heartbeat()
    try:
        jpath = journal_path(url)
        if jpath is not None:
            return _open_journal(jpath, create)
        if "://" not in url:
            raise UserError(
                f"storage {url!r} is not a URL; use sqlite:///PATH, postgresql+psycopg://USER@HOST/DB or journal:PATH"
            )
        return _open_rdb(url, create, heartbeat)
    except UserError:
        raise
    except Exception as e:  # driver missing, server down, bad URL, incompatible schema, corrupt journal
        raise UserError(f"cannot open store {display_url(url)}: {type(e).__name__}: {_first_line(e)}") from None


def store_exists(url: str | None = None) -> bool:
    """Whether a store is at `url`, looking without creating anything (UserError if something else is there).
    Server URLs count as existing: open_storage(create=True) adds the tables to an empty database."""
    url = resolve_url(url)
    path = sqlite_path(url) or journal_path(url)
    if path is None:
        return True
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
        known = study_names(storage)
        hint = f"; studies: {', '.join(known[:20])}" if known else "; the store has no studies"
        raise UserError(f"no study named {name!r}{hint}") from None


# ---------------------------------------------------------------------------------------------------------
# Artifacts


class AtomicFileSystemArtifactStore(FileSystemArtifactStore):
    """FileSystemArtifactStore whose writes go to a temporary name and are renamed: a killed worker never leaves
    a truncated artifact under a real id (Optuna writes in place)."""

    def __init__(self, base_path: str | Path) -> None:
        super().__init__(base_path)
        self.base_path = Path(base_path)

    def write(self, artifact_id: str, content_body) -> None:
        final = self._get_filepath(artifact_id)
        tmp = final.with_name(f".{final.name}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            with open(tmp, "wb") as f:
                while chunk := content_body.read(1 << 20):
                    f.write(chunk)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)


def artifact_dir(url: str | None = None, override: str | Path | None = None) -> Path:
    """--artifacts DIR, else $STUDY_ARTIFACTS, else <store stem>_artifacts beside a SQLite/journal file, else
    <database>_artifacts in the working directory (server stores: use a shared --artifacts across machines)."""
    override = override or os.environ.get(ENV_ARTIFACTS)
    if override:
        return Path(override)
    url = resolve_url(url)
    path = journal_path(url) or sqlite_path(url)
    if path is not None:
        return path.with_name(path.stem + "_artifacts")
    if "://" in url and not url.startswith("sqlite"):
        from sqlalchemy.engine import make_url

        try:
            database = make_url(url).database or "study"
        except Exception:
            database = "study"
        return Path(f"{Path(database).name}_artifacts")
    return Path("memory_artifacts")


def open_artifacts(
    url: str | None = None, override: str | Path | None = None, *, create: bool = True
) -> AtomicFileSystemArtifactStore | None:
    """The artifact store of a store; its directory is created unless `create=False` (then None if missing)."""
    path = artifact_dir(url, override)
    if not path.is_dir():
        if not create:
            return None
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UserError(f"cannot create artifact directory {path}: {_first_line(e)}") from None
    return AtomicFileSystemArtifactStore(path)


def upload(
    artifact_store,
    trial,
    file_path: str | Path,
    *,
    mimetype: str = "application/octet-stream",
    storage: optuna.storages.BaseStorage | None = None,
) -> str:
    """Upload a file as an artifact of `trial` (optuna.Trial, or FrozenTrial with `storage`); return its id.

    Unlike optuna.artifacts.upload_artifact, the file is written first and the metadata second, so a failed
    upload never leaves metadata that points at nothing (there is no API to delete trial system attrs).
    """
    storage = storage or getattr(trial, "storage", None)
    if storage is None:
        raise ValueError("storage is required for a FrozenTrial")
    file_path = Path(file_path)
    artifact_id = str(uuid.uuid4())
    _write(artifact_store, artifact_id, file_path)
    meta = ArtifactMeta(artifact_id=artifact_id, filename=file_path.name, mimetype=mimetype, encoding=None)
    try:
        storage.set_trial_system_attr(
            trial._trial_id, _ARTIFACT_ATTR_PREFIX + artifact_id, json.dumps(dataclasses.asdict(meta))
        )
    except BaseException:
        remove_quietly(artifact_store, artifact_id)
        raise
    return artifact_id


def write_unlisted(artifact_store, file_path: str | Path) -> str:
    """Store a file in the artifact store without metadata (e.g. a resume checkpoint that will be replaced):
    the dashboard does not list it; the caller keeps the id (in a user attr) and removes it when superseded."""
    artifact_id = f"resume-{uuid.uuid4()}"
    _write(artifact_store, artifact_id, Path(file_path))
    return artifact_id


def _write(artifact_store, artifact_id: str, file_path: Path) -> None:
    """Copy a file into the artifact store; a full disk or a read-only directory is a UserError (one line, the
    trial fails with it), and leaves nothing behind (AtomicFileSystemArtifactStore writes a temporary file)."""
    try:
        with open(file_path, "rb") as f:
            artifact_store.write(artifact_id, f)
    except OSError as e:
        raise UserError(f"cannot store {file_path.name} as artifact {artifact_id}: {e.strerror or e}") from None


def remove_quietly(artifact_store, artifact_id: str) -> None:
    try:
        artifact_store.remove(artifact_id)
    except (ArtifactNotFound, OSError, ValueError):
        pass


def download(artifact_store, artifact_id: str, dest: str | Path) -> Path:
    """Copy artifact `artifact_id` to `dest` (tmp + rename); an existing `dest` is reused: ids are immutable."""
    dest = Path(dest)
    if dest.is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        try:
            reader = artifact_store.open_reader(artifact_id)
        except (ArtifactNotFound, ValueError) as e:
            raise UserError(f"artifact {artifact_id} is not in the artifact store ({_first_line(e)})") from None
        with reader, open(tmp, "wb") as f:
            while chunk := reader.read(1 << 20):
                f.write(chunk)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest
