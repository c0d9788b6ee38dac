"""Hydra configs shipped with lte.

A package (not a bare folder) because Hydra finds the configs of an installed lte through
``pkg://lte.conf`` when a console script such as ``lte-train`` imports the entry module.
"""
