"""Sections of a page that stand on their own (an expander, a view): each a function a page calls once."""
