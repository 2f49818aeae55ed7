"""eval/fit_fusion.py: how a set's retrieval is scored from its eval rows, and how a weight is chosen (mean over
sets, ties to the settings' value), with one corpus left out."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "eval"))
import fit_fusion  # noqa: E402


def test_retrieval_scores_read_the_answerable_rows_only() -> None:
    rows = [{"answerable": True, "rank": 1}, {"answerable": True, "rank": 4}, {"answerable": True, "rank": None},
            {"answerable": True, "rank": 2}, {"answerable": False, "rank": None}]
    scores = fit_fusion.retrieval_scores(rows)
    assert scores["mrr_at_10"] == pytest.approx((1 + 1 / 4 + 0 + 1 / 2) / 4)
    assert scores["hit_at_2"] == pytest.approx(2 / 4)


def test_the_weight_with_the_best_mean_wins_and_ties_keep_the_settings_value() -> None:
    scores = {
        0.0: {"a": {"mrr_at_10": 0.5}, "b": {"mrr_at_10": 0.9}},
        1.0: {"a": {"mrr_at_10": 0.7}, "b": {"mrr_at_10": 0.8}},
        2.0: {"a": {"mrr_at_10": 0.8}, "b": {"mrr_at_10": 0.7}},
    }
    assert fit_fusion.best_weight(scores, ["a", "b"], current=0.0) == 1.0  # 0.75 = 0.75 > 0.70: the current wins ties
    assert fit_fusion.best_weight(scores, ["a", "b"], current=2.0) == 2.0
    assert fit_fusion.best_weight(scores, ["a", "b"], current=0.5) == 1.0  # no current in the grid: the first
    assert fit_fusion.best_weight(scores, ["b"], current=1.0) == 0.0


def test_a_saved_grid_is_refitted_with_each_corpus_left_out(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_SENTENCE_WEIGHT", "1.0")  # the settings' value, whatever the default becomes
    grid = {"grid": [
        {"sentence_weight": 0.0, "sets": {"questions": {"mrr_at_10": 0.9}, "conversations": {"mrr_at_10": 0.9},
                                          "other": {"mrr_at_10": 0.5}}},
        {"sentence_weight": 1.0, "sets": {"questions": {"mrr_at_10": 0.8}, "conversations": {"mrr_at_10": 0.8},
                                          "other": {"mrr_at_10": 0.75}}},
    ]}
    saved = tmp_path / "grid.json"
    saved.write_text(json.dumps(grid))
    out = tmp_path / "fit.json"
    assert fit_fusion.main(["--scores", str(saved), "--json", str(out)]) == 0
    fit = json.loads(out.read_text())
    # Left out together, the shipped sets get the weight the other corpus prefers, and the other gets theirs.
    assert fit["leave_one_out"]["questions"] == {"weight": 1.0, "held_out": 0.8, "settings": 0.8, "without": 0.9}
    assert fit["leave_one_out"]["conversations"]["weight"] == 1.0
    assert fit["leave_one_out"]["other"] == {"weight": 0.0, "held_out": 0.5, "settings": 0.75, "without": 0.5}
    assert fit["fitted"] == {"sentence_weight": 1.0}  # mean 0.783 against 0.767
    assert "fitted on all sets: sentence_weight 1.00 (settings today: 1.00)" in capsys.readouterr().out
