"""Eigenvalues of kernels: the generic extreme-eigenpair solver, matrix-free NTK eigenvalues and kernels
sharded over devices (docs/theory.md §7, §12).
"""
