"""Ids that end up in MQTT topic levels and event fields: lower-case letters, digits, '_' and '-'."""

NAME_PATTERN = r"^[a-z0-9_-]+$"
