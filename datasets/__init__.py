"""Vitamin's dataset library: specs, anonymization, the build pipeline and storage. Plain Python: no Django."""
