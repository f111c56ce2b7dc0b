"""The store: opening it by URL (heartbeat, retries), artifacts, and the study schema. No torch here."""

from storage.store import (
    DEFAULT_URL,
    Heartbeat,
    artifact_dir,
    display_url,
    download,
    load_study,
    open_artifacts,
    open_storage,
    resolve_url,
    store_exists,
    study_names,
    upload,
)

__all__ = [
    "DEFAULT_URL",
    "Heartbeat",
    "artifact_dir",
    "display_url",
    "download",
    "load_study",
    "open_artifacts",
    "open_storage",
    "resolve_url",
    "store_exists",
    "study_names",
    "upload",
]
