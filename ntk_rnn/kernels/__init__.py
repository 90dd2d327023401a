"""The kernel functions: the exact empirical NTK (structured paths and autodiff references) and the
infinite-width NTK and NNGP, as pure JAX functions and as batched wrappers (docs/theory.md §2, §3, §8, §9, §14).
"""
