"""Applications: the perturbation probes, datasets, real sequences and their classification, storage and
the command line (docs/theory.md §6, §11).
"""
