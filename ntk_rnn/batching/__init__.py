"""The batching layer: the kernel-function protocol (KernelFn) and `batch`, which computes any kernel function
in chunks of samples on every device of every process (docs/theory.md §12, §14).
"""
