"""e2ep: End-to-End Personalization. Shared plumbing: typed configuration, data I/O, the command line."""

__version__ = "0.1.0"
