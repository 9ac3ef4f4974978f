"""The names of the recommenders a run may ask for: a leaf module, so the command line's help can list them without
importing the configuration (and everything it imports)."""

KNOWN_MODELS = ("popularity", "ease", "itemknn", "rp3beta", "bpr-mf", "lightgcn", "ngcf", "als", "gat", "gat-id",
                "gat-paper")
"""Every model name `models.names` accepts (the default run uses `ModelsConfig.names`)."""
