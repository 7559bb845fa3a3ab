"""Ids that end up in MQTT topic levels and event fields: lower-case letters, digits, '_' and '-'.

At most NAME_MAX_LENGTH characters: an id is repeated in every topic, client id and event id, and
MQTT strings are limited to 65,535 bytes (a longer one made paho's thread die in struct.pack)."""

NAME_PATTERN = r"^[a-z0-9_-]+$"
NAME_MAX_LENGTH = 64
