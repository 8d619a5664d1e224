"""Ad-platform and commerce connectors, one package per platform (see base.py)."""
