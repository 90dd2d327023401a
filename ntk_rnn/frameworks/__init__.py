"""Importers of trained recurrent networks from PyTorch, Flax and Equinox (each framework optional)."""
