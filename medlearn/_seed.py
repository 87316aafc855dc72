"""Reproducibility: one call seeds every random number generator a chapter uses."""

import os
import random


def set_seed(seed: int = 42) -> int:
    """Seed Python, NumPy and (when installed) torch; return the seed so a notebook can print it.

    Introduced in part 1 ("the seven steps"); every chapter calls it once, visibly.
    """
    random.seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    import numpy as np

    np.random.seed(seed)
    try:
        import torch
    except ImportError:
        return seed
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    return seed
