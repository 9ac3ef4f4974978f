"""Errors a user can fix. The CLI prints their message as one line and exits non-zero; anything else is a bug."""


class E2EPError(Exception):
    """Base class: the message says what is wrong and how to fix it."""


class DataError(E2EPError):
    """Missing, corrupt or malformed input data."""


class ConfigError(E2EPError):
    """An invalid configuration value or flag."""
