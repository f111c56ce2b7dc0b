"""The store: opening it by URL (heartbeat, retries; read-only), artifacts, the study schema, and storage failures
as one line. No torch here."""

from storage.artifacts import artifact_dir, open_artifacts
from storage.failures import store_errors
from storage.store import (
    Heartbeat,
    delete_study,
    find_study_id,
    load_study,
    open_storage,
    read_summaries,
    store_exists,
    study_names,
)
from storage.urls import DEFAULT_URL, display_url, resolve_url

__all__ = [
    "DEFAULT_URL",
    "Heartbeat",
    "artifact_dir",
    "delete_study",
    "display_url",
    "find_study_id",
    "load_study",
    "open_artifacts",
    "open_storage",
    "read_summaries",
    "resolve_url",
    "store_errors",
    "store_exists",
    "study_names",
]
