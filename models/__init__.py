"""Recommenders: the common interface (`base`) and every model behind it."""
