"""Evaluation and agreement statistics the chapters need beyond MONAI and scikit-learn.

Submodules: `classification` (bootstrap confidence intervals, patient-level aggregation),
`agreement` (Krippendorff's alpha, ICC, Bland-Altman), `segmentation` (volumes, rater-adjusted Dice).
Import from the submodule, e.g. `from medlearn.metrics.agreement import krippendorff_alpha`.
"""
