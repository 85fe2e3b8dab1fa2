"""``services.cli.demo_seed``: the demo users' password hashes; the seeding itself, against a real
database, is in ``tests/integration/cli/test_demo_seed.py``."""

from __future__ import annotations

from argon2 import PasswordHasher

from services.cli.demo_seed import hash_password


def test_hash_password_is_salted_argon2id() -> None:
    first, second = hash_password("demo"), hash_password("demo")
    assert first != second
    assert PasswordHasher().verify(first, "demo")
    assert PasswordHasher().verify(second, "demo")
