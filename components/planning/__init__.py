"""Pure planning: the catalog, the GPU memory planner, the model rules, device naming, the preflight spec.

Plain Python, free of Pulumi (tests/test_layout.py asserts it): what a stack needs on its GPUs and
hosts, decided before any resource exists.
"""
