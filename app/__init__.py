"""Hejie 和解: online mediation for overdue consumer debt."""
