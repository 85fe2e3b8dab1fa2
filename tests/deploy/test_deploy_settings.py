"""Every EXPORTS_* variable in deploy/ is a real setting (shared/settings.py is the only source)."""

from __future__ import annotations

import re

from pydantic import SecretStr

from shared.settings import Settings
from tests.deploy.loading import DEPLOY, OPERATIONS, ROOT

VARIABLE = re.compile(r"\bEXPORTS_[A-Z0-9_]+\b")


def test_every_exports_variable_in_deploy_is_a_settings_field() -> None:
    prefix = Settings.model_config["env_prefix"]
    fields = {prefix + name.upper() for name in Settings.model_fields}
    used: dict[str, set[str]] = {}
    files = [p for p in DEPLOY.rglob("*") if p.is_file()]
    assert files
    for path in files:
        for name in VARIABLE.findall(path.read_text(encoding="utf-8")):
            used.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    unknown = {name: sorted(where) for name, where in used.items() if name not in fields}
    assert not unknown, f"not fields of shared.settings.Settings: {unknown}"
    assert "EXPORTS_DATABASE_URL" in used


def _shown(default: object) -> str:
    """A default as the table in docs/operations.md writes it."""
    if isinstance(default, SecretStr):
        return default.get_secret_value() or "—"
    if isinstance(default, bool):
        return str(default).lower()
    if isinstance(default, float) and default.is_integer():
        return str(int(default))
    return str(default)


def test_operations_doc_lists_every_setting_with_its_default() -> None:
    rows: dict[str, str] = {}
    for line in OPERATIONS.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and re.fullmatch(r"`EXPORTS_[A-Z0-9_]+`", cells[0]):
            rows[cells[0].strip("`")] = cells[1].strip("`")
    prefix = Settings.model_config["env_prefix"]
    for name, field in Settings.model_fields.items():
        variable = prefix + name.upper()
        assert variable in rows, f"docs/operations.md's settings table lacks {variable}"
        assert rows[variable] == _shown(field.default), f"{variable}: default is {field.default!r}"
