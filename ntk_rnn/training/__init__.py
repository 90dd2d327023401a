"""Training on the kernels: GD/SGD with kernel tracking, the linearized model and its closed form, true
against linearized training side by side, kernel ensembles, and rate fits (docs/theory.md §4, §11).
"""
