"""Telemetry tests (a package: its conftest.py must not shadow tests/conftest.py)."""
