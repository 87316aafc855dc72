"""The benchmark record: plain JSON numbers, intervals around estimates, flags against the table."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medlearn.recipes.report import (MEDMNIST_V2, benchmark_record, comparison_table,
                                     write_record)


def _record(prob, y, **extra):
    return benchmark_record("breastmnist", y, prob, wall_s=12.34, recipe={"epochs": 1},
                            n_boot=200, seed=0, **extra)


@pytest.fixture
def cases():
    """60 cases, a third positive, with informative but imperfect probabilities."""
    rng = np.random.default_rng(0)
    y = np.repeat([1, 0, 0], 20)
    prob = np.clip(0.3 * y + rng.uniform(0, 0.7, len(y)), 0, 1)
    return y, prob


def test_record_holds_plain_floats_with_the_estimate_inside_its_interval(cases):
    from sklearn.metrics import accuracy_score, roc_auc_score

    y, prob = cases
    record = _record(prob, y, per_seed=[{"seed": np.int64(1)}])
    for name in ("AUC", "accuracy"):
        row = record["metrics"][name]
        assert all(type(row[k]) is float for k in ("estimate", "low", "high"))
        assert row["low"] <= row["estimate"] <= row["high"]
    assert record["metrics"]["AUC"]["estimate"] == pytest.approx(roc_auc_score(y, prob), abs=1e-4)
    assert record["metrics"]["accuracy"]["estimate"] == pytest.approx(
        accuracy_score(y, prob >= 0.5), abs=1e-4)
    assert (record["test_n"], record["test_positive"], record["wall_s"]) == (60, 20, 12.3)
    assert record["cpus"] >= 1 and "torch" in record["versions"]


def test_above_best_flags_compare_with_the_best_published_result():
    y = np.repeat([1, 0], [40, 110])
    best_auc = max(a for a, _ in MEDMNIST_V2["breastmnist"].values())
    perfect = _record(y * 0.9 + 0.05, y)
    assert perfect["published"]["best_auc"] == best_auc == 0.919
    assert perfect["above_best_published"] == {"AUC": True, "ACC": True}
    # every positive ranked below every negative: AUC 0 and ACC 0, below both bests
    inverted = _record(1 - (y * 0.9 + 0.05), y)
    assert inverted["above_best_published"] == {"AUC": False, "ACC": False}
    # the majority class: ACC 110/150 = 0.733, below the best published 0.863
    assert _record(np.zeros(len(y)), y)["above_best_published"]["ACC"] is False


def test_write_record_writes_valid_json_and_the_table_shows_every_published_row(cases, tmp_path):
    y, prob = cases
    record = _record(prob, y, per_seed=[{"seed": np.int64(1), "AUC": np.float32(0.5)}])
    path = write_record(record, tmp_path / "sub" / "breastmnist.json")
    loaded = json.loads(path.read_text())
    assert loaded["metrics"] == record["metrics"] and loaded["per_seed"][0]["seed"] == 1
    table = comparison_table(record)
    assert all(method in table for method in MEDMNIST_V2["breastmnist"])
    m = record["metrics"]["AUC"]
    assert f"{m['estimate']:.3f} ({m['low']:.3f}-{m['high']:.3f})" in table


def test_record_refuses_an_unknown_dataset_and_mismatched_lengths(cases):
    y, prob = cases
    with pytest.raises(ValueError, match="no published MedMNIST v2 table"):
        benchmark_record("chestmnist", y, prob, wall_s=1, recipe={})
    with pytest.raises(ValueError, match="60 labels but 59 probabilities"):
        _record(prob[:-1], y)


def test_rows_table_reads_nested_keys_and_aligns_text_left_numbers_right():
    from medlearn.recipes.report import rows_table

    rows = [{"row": "baseline", "val": {"AUC": 0.93215}, "cpu_s": 9.4},
            {"row": "five-network ensemble", "val": {"AUC": 0.948}, "cpu_s": 39.0}]
    lines = rows_table(rows, [("row", "row", "s"), ("val AUC", "val.AUC", ".3f"),
                              ("CPU s", "cpu_s", ".0f")]).splitlines()
    assert lines[0].split() == ["row", "val", "AUC", "CPU", "s"]
    assert lines[1].split() == ["baseline", "0.932", "9"]
    assert lines[2].split() == ["five-network", "ensemble", "0.948", "39"]
    assert lines[1].startswith("baseline ") and lines[1].endswith(" 9")
    assert len({len(line) for line in lines}) == 1, "every line as wide as the widest"
    with pytest.raises(KeyError, match="test"):
        rows_table(rows, [("test AUC", "test.AUC", ".3f")])


def test_auc_acc_returns_plain_floats_at_the_threshold():
    from medlearn.recipes.report import auc_acc

    positive = np.array([1, 1, 0, 0, 0])
    prob = np.array([0.9, 0.4, 0.6, 0.1, 0.2])
    out = auc_acc(positive, prob)
    assert out == {"AUC": pytest.approx(5 / 6, abs=1e-4), "ACC": 0.6}
    assert all(type(v) is float for v in out.values())
    assert auc_acc(positive, prob, threshold=0.35)["ACC"] == 0.8  # 0.4 now positive; 0.6 still wrong
    assert auc_acc(positive == 1, prob, threshold=0.95)["ACC"] == 0.6
