"""Artifacts: checkpoints and other files of trials, in a directory beside the store (Optuna's artifact store).

The one module for artifact files; everyone imports these functions from here: `open_artifacts` (the store of a
URL), `upload` (a listed artifact of a trial), `write_unlisted` (a resume checkpoint), `local_file` (a local file
holding an artifact), `remove_quietly`.

Written atomically (temporary name, then rename) and file first, metadata second, so neither a killed worker
nor a full disk leaves an id that points at a truncated or missing file.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import uuid
from pathlib import Path

import optuna
from optuna.artifacts import ArtifactMeta, FileSystemArtifactStore
from optuna.artifacts.exceptions import ArtifactNotFound

from atomic import atomic_write
from errors import UserError, first_line
from storage.optuna_private import trial_id
from storage.urls import ENV_ARTIFACTS, journal_path, resolve_url, sqlite_path

ARTIFACT_ATTR_PREFIX = "artifacts:"  # what optuna.artifacts.upload_artifact and the dashboard use
CHUNK = 1 << 20  # bytes copied at a time: checkpoints stream through, never whole in memory


class AtomicFileSystemArtifactStore(FileSystemArtifactStore):
    """FileSystemArtifactStore whose writes go to a temporary name and are renamed: a killed worker never leaves
    a truncated artifact under a real id (Optuna writes in place)."""

    def __init__(self, base_path: str | Path) -> None:
        super().__init__(base_path)
        self.base_path = Path(base_path)

    def write(self, artifact_id: str, content_body) -> None:
        atomic_write(self._get_filepath(artifact_id), lambda f: shutil.copyfileobj(content_body, f, CHUNK))


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
            raise UserError(f"cannot create artifact directory {path}: {first_line(e)}") from None
    return AtomicFileSystemArtifactStore(path)


def upload(
    artifact_store,
    trial,
    file_path: str | Path,
    *,
    mimetype: str = "application/octet-stream",
    storage: optuna.storages.BaseStorage | None = None,
    filename: str | None = None,
) -> str:
    """Upload a file as an artifact of `trial` (optuna.Trial, or FrozenTrial with `storage`); return its id.

    Unlike optuna.artifacts.upload_artifact, the file is written first and the metadata second, so a failed
    upload never leaves metadata that points at nothing (there is no API to delete trial system attrs).
    """
    storage = storage or getattr(trial, "storage", None)
    if storage is None:
        raise ValueError("storage is required for a FrozenTrial")
    file_path = Path(file_path)
    # the id stays a bare uuid: optuna-dashboard serves only ids of hex digits and dashes; the name it downloads
    # under (and lists) is `filename`
    artifact_id = str(uuid.uuid4())
    _write(artifact_store, artifact_id, file_path)
    meta = ArtifactMeta(artifact_id=artifact_id, filename=filename or file_path.name, mimetype=mimetype, encoding=None)
    try:
        storage.set_trial_system_attr(
            trial_id(trial), ARTIFACT_ATTR_PREFIX + artifact_id, json.dumps(dataclasses.asdict(meta))
        )
    except BaseException:
        remove_quietly(artifact_store, artifact_id)
        raise
    return artifact_id


def write_unlisted(artifact_store, file_path: str | Path) -> str:
    """Store a file in the artifact store without metadata (e.g. a resume checkpoint that will be replaced):
    the dashboard does not list it; the caller keeps the id (in a user attr) and removes it when superseded."""
    artifact_id = f"resume-{uuid.uuid4()}{Path(file_path).suffix}"
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


def remove_quietly(artifact_store, artifact_id: str) -> bool:
    """Remove an artifact file if it is there; whether one was removed."""
    try:
        artifact_store.remove(artifact_id)
    except (ArtifactNotFound, OSError, ValueError):
        return False
    return True


def local_file(artifact_store, artifact_id: str, cache_dir: str | Path) -> Path:
    """A local file holding artifact `artifact_id`: the file itself in a file-system store (UserError when it is
    missing), else a copy downloaded to `cache_dir`/encoders/ (reused: ids are immutable)."""
    base = getattr(artifact_store, "base_path", None)
    if base is not None:
        path = Path(base) / artifact_id
        if not path.is_file():
            raise UserError(f"checkpoint artifact {artifact_id} is missing from {base}")
        return path
    return _download(artifact_store, artifact_id, Path(cache_dir) / "encoders" / f"{artifact_id}.pt")


def _download(artifact_store, artifact_id: str, dest: Path) -> Path:
    """Copy artifact `artifact_id` to `dest` (tmp + rename); an existing `dest` is reused: ids are immutable."""
    if dest.is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        reader = artifact_store.open_reader(artifact_id)
    except (ArtifactNotFound, ValueError) as e:
        raise UserError(f"artifact {artifact_id} is not in the artifact store ({first_line(e)})") from None
    with reader:
        return atomic_write(dest, lambda f: shutil.copyfileobj(reader, f, CHUNK))
