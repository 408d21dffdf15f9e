"""Vitamin's source connectors: each streams Arrow record batches from one kind of source. Plain Python: no Django."""
