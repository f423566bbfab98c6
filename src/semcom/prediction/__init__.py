"""Predictions both ends of a link can form from what they already decoded (here: global motion compensation)."""
