"""Seeded synthetic stand-ins, each in the on-disk format of the real data set it replaces.

Each module exposes `generate(root, *, n=None, seed=0, fast=False) -> pandas.DataFrame`.
"""
