"""Figures about a bank's own cases, for its staff: the dashboard and the case list's counts."""
