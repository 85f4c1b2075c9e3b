"""Training loops for SQAIR."""
