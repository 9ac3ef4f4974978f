"""Entry points: the `e2ep` command line, `make bench` and `make serve`. Nothing imports from here."""
