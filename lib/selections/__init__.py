"""Selections on events: the ApplySelections stage function."""
