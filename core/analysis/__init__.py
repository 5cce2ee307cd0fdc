"""Analyses over attention tensors: pure functions, usable from Python, the command line and the app."""
