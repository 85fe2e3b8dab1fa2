"""The codex-exports schema package: the contract every service imports.

It never imports a service (an import-linter contract enforces this).
"""
