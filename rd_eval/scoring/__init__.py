"""Judging one response: answer extraction, math parsing, equivalence, and the typed per-document score."""
