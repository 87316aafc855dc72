"""Benchmark recipes: small models trained in CPU minutes on the real MedMNIST v2 sets.

Each recipe is shared by a book chapter's full tier and a script in `benchmarks/`, so the book
teaches exactly what the benchmark measures:

- `breastmnist`: chapter 1.2 and `benchmarks/breastmnist.py` (2D ultrasound, 28 x 28);
- `adrenalmnist3d`: chapters 3.1-3.2 and `benchmarks/adrenalmnist3d.py` (3D shape masks);
- `report`: the published MedMNIST v2 results, the JSON record of a run (estimates with 95%
  bootstrap CIs, wall time, CPU count, library versions) and the side-by-side table.
"""
