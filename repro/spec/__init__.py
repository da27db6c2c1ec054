"""Spec schema, loading and errors."""
