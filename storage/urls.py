"""Storage URLs: which one a command uses, what it points at, and how it is shown (password masked).

Plain string work (SQLAlchemy's URL parser is imported only when a URL needs parsing), so every module of
storage/ and reports/ can use it without opening anything.
"""

from __future__ import annotations

import os
from pathlib import Path

from errors import UserError, first_line

DEFAULT_URL = "sqlite:///studies.db"
ENV_STORAGE = "STUDY_STORAGE"
ENV_ARTIFACTS = "STUDY_ARTIFACTS"
JOURNAL_PREFIX = "journal:"
# What SQLAlchemy 2 refuses (it dropped the "postgres" alias) and what to write instead.
POSTGRES_ALIASES = ("postgres://", "postgres+")
POSTGRES_HINT = "postgresql+psycopg://USER@HOST:PORT/DB"


def resolve_url(url: str | None = None) -> str:
    """--storage URL, else $STUDY_STORAGE, else sqlite:///studies.db (in the working directory)."""
    return url or os.environ.get(ENV_STORAGE) or DEFAULT_URL


def display_url(url: str) -> str:
    """The URL with any password replaced by ***, for messages and reports that may be shared."""
    if url.startswith(JOURNAL_PREFIX) or "://" not in url:
        return url
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy parses: show only what follows the credentials
        return url.split("@")[-1]


def check_dialect(url: str) -> None:
    """UserError for the URLs SQLAlchemy rejects with a message that does not say what to write instead."""
    if url.startswith(POSTGRES_ALIASES):
        scheme = url.split("://", 1)[0]
        raise UserError(f"storage URL scheme {scheme!r} is not accepted by SQLAlchemy; write {POSTGRES_HINT}")


def sqlite_path(url: str) -> Path | None:
    """The file of a sqlite:/// URL (None for other URLs and in-memory databases)."""
    if not url.startswith("sqlite:"):
        return None
    from sqlalchemy.engine import make_url

    try:
        database = make_url(url).database
    except Exception as e:
        raise UserError(f"storage URL {url!r} cannot be parsed ({first_line(e)})") from None
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def journal_path(url: str) -> Path | None:
    return Path(url[len(JOURNAL_PREFIX) :]) if url.startswith(JOURNAL_PREFIX) else None


def store_file(url: str) -> Path | None:
    """The file that holds a SQLite or journal store (None for server databases)."""
    return journal_path(url) or sqlite_path(url)
