"""The base of every configuration model (kept apart so stage packages can define their own sections)."""

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    """Unknown keys are errors, so a misspelt option never silently does nothing."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)
