"""The model: its configuration (a pytree of variances over a static structure), the recurrent cells, the
forward pass, the losses, and the checks of what users pass in (docs/theory.md §1, §8).
"""
