"""Library access (SPEC §2), this product's own rule: the one place it is written.

A user without rows in ``exports.user_library_access`` may read every library; a user with rows
may read only those libraries. The api applies it when a request names libraries, and the worker
applies it again when the export runs, so access revoked in between is honoured.
"""

from __future__ import annotations

TABLE = "exports.user_library_access"


def readable(library_id: str, user_id: str) -> str:
    """A SQL condition: the library ``library_id`` (an expression) is readable by ``user_id``.

    Both arguments are SQL expressions of this product's own (a column, a ``$n`` parameter),
    never user input.
    """
    return (
        f"(NOT EXISTS (SELECT 1 FROM {TABLE} ula WHERE ula.user_id = {user_id})"
        f" OR EXISTS (SELECT 1 FROM {TABLE} ula"
        f" WHERE ula.user_id = {user_id} AND ula.library_id = {library_id}))"
    )
