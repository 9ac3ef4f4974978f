"""Secrets by name: configurations hold where a key lives, never the key.

A secret name is either an environment variable (`OPENAI_API_KEY`) or a Prefect Secret block
(`prefect-secret:openai-key`, created in the UI or with `Secret(value=...).save("openai-key")`). Names are what
flow parameters, cache keys, logs and artifacts see; the value is looked up at the moment it is sent and is
handed straight to the client that sends it.
"""

from __future__ import annotations

import os

from e2ep.errors import ConfigError

PREFECT_SECRET_PREFIX = "prefect-secret:"


def is_block_reference(name: str) -> bool:
    return name.startswith(PREFECT_SECRET_PREFIX)


def _block_name(name: str) -> str:
    block = name.removeprefix(PREFECT_SECRET_PREFIX).strip()
    if not block:
        raise ConfigError(f"secret name {name!r} names no Prefect Secret block (write prefect-secret:<block name>)")
    return block


def resolve_secret(name: str) -> str | None:
    """The secret's value, or None when the variable is unset or empty (a missing block is a ConfigError)."""
    if not is_block_reference(name):
        return os.environ.get(name) or None
    from prefect.blocks.system import Secret

    block = _block_name(name)
    try:
        # prefect types load() for async callers too; called from sync code it returns the block
        value = Secret.load(block).get()  # pyright: ignore[reportAttributeAccessIssue]
    except ValueError:
        # Prefect raises ValueError for an unknown block document; its message holds only the name.
        raise ConfigError(
            f"Prefect Secret block {block!r} not found (create it in the UI or with "
            f"`Secret(value=...).save({block!r})`)"
        ) from None
    return str(value) if value else None


def require_secret(name: str, what: str) -> None:
    """ConfigError (one line, naming the secret, never its value) when `name` resolves to nothing."""
    if resolve_secret(name) is None:
        where = f"Prefect Secret block {_block_name(name)!r}" if is_block_reference(name) else f"${name}"
        raise ConfigError(f"{what} missing: {where} is not set")
