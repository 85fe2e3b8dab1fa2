"""``services.api.api_keys``: what a key looks like and how it is stored; keys over HTTP are in
``tests/integration/security/test_api_keys.py``."""

from __future__ import annotations

import hashlib
import re

from services.api import api_keys


def test_keys_are_random_prefixed_and_hashed_with_sha256() -> None:
    keys = {api_keys.new_key() for _ in range(1000)}
    assert len(keys) == 1000
    for key in list(keys)[:50]:
        assert re.fullmatch(r"cxk_[A-Za-z0-9_-]{43}", key)
        assert api_keys.digest(key) == hashlib.sha256(key.encode()).digest()
    assert not api_keys.looks_like_key("cxk_" + "a" * 200)
    assert not api_keys.looks_like_key("Bearer abc")
