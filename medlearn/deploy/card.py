"""A model card (Mitchell et al. 2019) written from measured numbers, with metrics by subgroup and CIs.

Chapter 6.1. The card is markdown (it becomes the bundle's docs/README.md); its tables come from
`disaggregate`, so every number in it was measured by the cell that wrote it.
"""

from __future__ import annotations

import numpy as np

SECTIONS = ("Model details", "Intended use", "Factors", "Metrics", "Evaluation data", "Training data",
            "Quantitative analyses", "Ethical considerations", "Caveats and recommendations")


def age_group(age, edges=(20, 35, 50, 80)) -> "pandas.Series":
    """Return age bands as strings ("20-34", ...) for an array of ages in years."""
    import pandas as pd

    labels = [f"{lo}-{hi - 1}" for lo, hi in zip(edges[:-1], edges[1:])]
    return pd.cut(pd.Series(age, dtype=float), bins=list(edges), right=False, labels=labels).astype(str)


def mean_ci(values, *, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """Return (mean, low, high): the mean and its percentile-bootstrap confidence interval."""
    v = np.asarray(values, float)
    v = v[~np.isnan(v)]
    if len(v) == 0:
        return (np.nan, np.nan, np.nan)
    rng = np.random.default_rng(seed)
    boots = rng.choice(v, size=(n_boot, len(v)), replace=True).mean(axis=1)
    a = (1 - level) / 2
    return float(v.mean()), float(np.quantile(boots, a)), float(np.quantile(boots, 1 - a))


def disaggregate(df, metric: str = "dice", by=("sex", "age_group"), **kw) -> "pandas.DataFrame":
    """Return one row per subgroup (and 'all'): n, mean `metric` and its bootstrap 95 % CI.

    Chapter 6.1. Small groups get wide intervals: the table shows n beside every number so a reader
    does not mistake a 5-case mean for a finding.
    """
    import pandas as pd

    rows = [{"factor": "all", "group": "all", "n": len(df), **dict(zip(("mean", "ci_low", "ci_high"),
                                                                        mean_ci(df[metric], **kw)))}]
    for factor in by:
        for group, part in df.groupby(factor, sort=True):
            m, lo, hi = mean_ci(part[metric], **kw)
            rows.append({"factor": factor, "group": str(group), "n": len(part), "mean": m,
                         "ci_low": lo, "ci_high": hi})
    return pd.DataFrame(rows)


def _table(df, metric: str) -> str:
    lines = [f"| factor | group | n | mean {metric} | 95 % CI |", "|---|---|---|---|---|"]
    for r in df.itertuples():
        lines.append(f"| {r.factor} | {r.group} | {r.n} | {r.mean:.3f} | {r.ci_low:.3f} – {r.ci_high:.3f} |")
    return "\n".join(lines)


def model_card(meta: dict, sections: dict, table=None, metric: str = "dice") -> str:
    """Return the model card as markdown: Mitchell et al.'s nine sections, filled from `sections`.

    Chapter 6.1. `meta` is the bundle metadata (name, version, versions of the libraries);
    `sections` maps section names to text; `table` (from `disaggregate`) goes under
    "Quantitative analyses". A section left out is printed as "not documented" so the gap shows.
    """
    out = [f"# Model card: {meta['name']} {meta['version']}", ""]
    for name in SECTIONS:
        out += [f"## {name}", ""]
        text = sections.get(name, "*Not documented.*")
        if name == "Model details":
            text = (f"{text}\n\n- version {meta['version']}; MONAI {meta.get('monai_version')}, "
                    f"PyTorch {meta.get('pytorch_version')}\n- intended use: {meta.get('intended_use', '')}")
        if name == "Quantitative analyses" and table is not None:
            text = f"{text}\n\n{_table(table, metric)}"
        out += [text, ""]
    return "\n".join(out)
