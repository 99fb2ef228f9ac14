"""Supervision of units beyond single alerts: the four-colour risk grade."""
