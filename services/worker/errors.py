"""What can go wrong in an export, and which of it is worth retrying."""

from __future__ import annotations

import asyncio

import asyncpg
import nats.errors

from shared.catalog_db import CatalogBehind, CatalogUnavailable
from shared.object_store import ObjectStoreError


class WorkerError(Exception):
    """Base of the worker's own errors."""


class ExportCancelled(WorkerError):
    """The owner cancelled or deleted the export while it ran."""


class ExportInterrupted(WorkerError):
    """The worker is shutting down: hand the export back."""


class ExportLost(WorkerError):
    """Another worker took the export over (our heartbeat went stale)."""


# Errors that mean "try again later": the network or a server, never the data.
RETRYABLE_ERRORS: tuple[type[BaseException], ...] = (
    ObjectStoreError,
    CatalogUnavailable,
    CatalogBehind,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.SerializationError,
    ConnectionError,
    OSError,
    TimeoutError,
    asyncio.TimeoutError,
    nats.errors.Error,
)


def is_retryable(err: BaseException) -> bool:
    return isinstance(err, RETRYABLE_ERRORS)


def describe(err: BaseException) -> str:
    """A sentence a person can read; never a stack trace."""
    if isinstance(err, ObjectStoreError):
        return "the file storage was unreachable or refused the upload"
    if isinstance(err, CatalogUnavailable):
        return "the catalog database (read replica) was unavailable"
    if isinstance(err, CatalogBehind):
        return (
            "the catalog read replica was more than "
            f"{err.max_lag_seconds:g} s behind the primary database"
        )
    if isinstance(
        err,
        asyncpg.PostgresConnectionError
        | asyncpg.InterfaceError
        | asyncpg.exceptions.CannotConnectNowError
        | asyncpg.exceptions.AdminShutdownError,
    ):
        return "the library database was unreachable"
    if isinstance(err, TimeoutError | asyncio.TimeoutError):
        return "a server took too long to answer"
    if isinstance(err, ConnectionError | OSError | nats.errors.Error):
        return "a server was unreachable"
    if isinstance(err, asyncpg.PostgresError):
        return "the library catalog could not be read"
    return "an unexpected error occurred while writing the file"
