"""What a store that fails mid-command raises, as one line: `with store_errors(url): ...`.

A read-only SQLite file, a full disk, a server that went away or a value too long for a column surfaces from
SQLAlchemy, the database driver, Optuna (which wraps commit errors in StorageInternalError with a guess, "e.g.
exceeding max length") or the file system (journal stores). None of these is a bug of ours: the user fixes the
store, so each becomes a UserError naming the store and the underlying reason.
"""

from __future__ import annotations

import errno
import sqlite3
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import optuna

from errors import UserError, first_line
from storage.urls import display_url, resolve_url

# What databases say when a write meets a read-only store (SQLite, PostgreSQL's read-only transaction/replica).
_READ_ONLY_WORDS = ("readonly database", "read-only", "read only")


@contextmanager
def store_errors(url: str | None = None) -> Iterator[None]:
    """Inside the block, a storage failure becomes `UserError("store URL: reason")` (or "store URL is read-only
    (reason)"); anything else passes through untouched.

    Wrap only what talks to the store: an OSError from training inside the block would be blamed on the store.
    """
    try:
        yield
    except UserError:
        raise
    except Exception as e:
        if not is_store_error(e):
            raise
        raise UserError(store_message(resolve_url(url), e)) from None


def is_store_error(exc: BaseException) -> bool:
    """Whether `exc` comes from the store (database, driver, Optuna's storage layer, the file system). A bare
    BrokenPipeError never does: it is what `print` raises when the reader of stdout went away (`show NAME | head
    -1`; study.py exits 141 quietly), while a database's broken connection comes wrapped by its driver."""
    if isinstance(exc, BrokenPipeError):
        return False
    kinds: list[type[BaseException]] = [sqlite3.Error, OSError, optuna.exceptions.StorageInternalError]
    # a driver's or SQLAlchemy's errors can only have been raised if they were imported: no import here
    for module, name in (("sqlalchemy.exc", "SQLAlchemyError"), ("psycopg", "Error"), ("psycopg2", "Error")):
        if module in sys.modules:
            kinds.append(getattr(sys.modules[module], name))
    return isinstance(exc, tuple(kinds))


def store_message(url: str, exc: BaseException) -> str:
    """One line: which store, read-only or not, and the root cause (the driver's message, not the wrappers')."""
    root = root_cause(exc)
    if isinstance(root, OSError) and root.strerror:
        detail = f"{root.strerror}: {root.filename}" if root.filename else root.strerror
    else:
        detail = f"{type(root).__name__}: {first_line(root)}"
    if is_read_only(root):
        return f"store {display_url(url)} is read-only ({detail})"
    return f"store {display_url(url)}: {detail}"


def root_cause(exc: BaseException) -> BaseException:
    """The innermost error: SQLAlchemy's DBAPIError carries the driver's as `.orig`, Optuna raises its own `from`
    it (`__cause__`). An implicit `__context__` is not followed: it may be an unrelated error being handled."""
    seen = {id(exc)}
    while True:
        inner = getattr(exc, "orig", None)
        if not isinstance(inner, BaseException):
            inner = exc.__cause__
        if inner is None or id(inner) in seen:
            return exc
        seen.add(id(inner))
        exc = inner


def is_read_only(exc: BaseException) -> bool:
    if isinstance(exc, OSError) and exc.errno == errno.EROFS:
        return True
    text = str(exc).lower()
    return type(exc).__name__ == "ReadOnlySqlTransaction" or any(word in text for word in _READ_ONLY_WORDS)
