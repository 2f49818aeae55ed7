"""rag/evaluation/fitting.py: fitting settings on eval sets with each corpus left out, as eval/fit_thresholds.py,
eval/fit_fusion.py and `rag eval --leave-one-out` use it."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from rag import cli
from rag.evaluation import fitting
from rag.settings import Settings
from tests.test_eval import two_sets


def test_sets_are_scored_by_decisions_and_by_the_rank_of_their_evidence() -> None:
    rows = [{"answerable": True, "rank": 1, "passed": True}, {"answerable": True, "rank": 4, "passed": False},
            {"answerable": True, "rank": None, "passed": False}, {"answerable": True, "rank": 12, "passed": True},
            {"answerable": False, "rank": None, "passed": True}]
    assert fitting.decided_right(rows) == pytest.approx(3 / 5)
    assert fitting.mrr_at_10(rows) == pytest.approx((1 + 1 / 4) / 4)  # rank 12 is past the top 10


def test_the_best_mean_wins_ties_keep_the_settings_point_and_a_shared_corpus_is_left_out_whole() -> None:
    scores = {
        (0.0,): {"questions": 0.9, "conversations": 0.9, "other": 0.5},
        (1.0,): {"questions": 0.8, "conversations": 0.8, "other": 0.75},
        (2.0,): {"questions": 0.8, "conversations": 0.9, "other": 0.6},
    }
    fit = fitting.Fit(("sentence_weight",), "mrr_at_10", scores, current=(2.0,))
    assert fit.best(["questions", "conversations", "other"]) == (1.0,)  # mean 0.783 against 0.767 and 0.767
    assert fitting.Fit(("w",), "m", {(0.0,): {"a": 0.5}, (1.0,): {"a": 0.5}}, current=(1.0,)).best(["a"]) == (1.0,)
    assert fitting.Fit(("w",), "m", {(0.0,): {"a": 0.5}, (1.0,): {"a": 0.5}}, current=(3.0,)).best(["a"]) == (0.0,)
    left = fit.leave_one_out()
    # The shipped sets leave together: fitted on "other" alone, 1.0 wins; "other" gets what they prefer.
    assert left["questions"] == {"point": (1.0,), "held_out": 0.8, "settings": 0.8}
    assert left["conversations"] == {"point": (1.0,), "held_out": 0.8, "settings": 0.9}
    assert left["other"] == {"point": (0.0,), "held_out": 0.5, "settings": 0.6}


def test_a_saved_grid_refits_the_same_and_prints_the_left_out_table(capsys: pytest.CaptureFixture) -> None:
    scores = {(0.2, 0.25): {"a": 0.9, "b": 0.5}, (0.2, 0.45): {"a": 0.7, "b": 0.6}}
    fit = fitting.Fit(("min_support", "min_similarity"), "decided_right", scores, current=(0.2, 0.25))
    saved = json.loads(json.dumps(fitting.fit_to_json(fit)))
    assert saved["fitted"] == [0.2, 0.25] and saved["leave_one_out"]["a"] == {"point": [0.2, 0.45], "held_out": 0.7, "settings": 0.9}
    again = fitting.fit_from_json(saved, Settings())  # the settings' point: 0.2 / 0.25
    assert again.scores == scores and again.current == (0.2, 0.25)
    fitting.print_fit(again)
    out = capsys.readouterr().out
    assert "fitted on all sets: min_support / min_similarity = 0.2 / 0.25 (settings today: 0.2 / 0.25)" in out
    assert any(line.split() == ["a", "0.2", "/", "0.45", "0.700", "0.900"] for line in out.splitlines())


@pytest.mark.slow
def test_rag_eval_leave_one_out_fits_both_settings_with_each_corpus_left_out(tmp_path: Path, capsys) -> None:
    manifest = two_sets(tmp_path)
    cache = ["--cache", str(tmp_path / "cache")]
    assert cli.main(["eval", str(manifest), "--json", "--no-baseline", "--leave-one-out", *cache]) == 0
    data = json.loads(capsys.readouterr().out)
    assert list(data) == ["light", "harbour", "leave_one_out"]
    thresholds, weight = data["leave_one_out"]["min_support / min_similarity"], data["leave_one_out"]["sentence_weight"]
    assert len(thresholds["grid"]) == 16 and len(weight["grid"]) == 5
    for fit in (thresholds, weight):
        assert set(fit["leave_one_out"]) == {"light", "harbour"}
        for name, left in fit["leave_one_out"].items():  # each set scored at the point fitted on the other
            other = "harbour" if name == "light" else "light"
            best = max(g["sets"][other] for g in fit["grid"])
            at = next(g for g in fit["grid"] if g["point"] == left["point"])
            assert at["sets"][other] == best and at["sets"][name] == left["held_out"]
    assert data["light"]["decision_accuracy"] == 1.0  # the sets' own figures are the ordinary run's

    assert cli.main(["eval", str(tmp_path / "light.jsonl"), "--corpus", str(tmp_path / "lighthouse"),
                     "--leave-one-out", *cache]) == 1
    assert ("--leave-one-out needs sets on at least two corpora (e.g. eval/sets.toml)"
            in " ".join(capsys.readouterr().err.split()))


def test_a_fitting_script_refits_a_kept_grid_without_answering(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("RAG_SENTENCE_WEIGHT", "1.0")  # the settings' point, whatever the default becomes
    fit = fitting.Fit(("sentence_weight",), "mrr_at_10", {(0.0,): {"a": 0.9, "b": 0.5}, (1.0,): {"a": 0.8, "b": 0.7}},
                      current=(1.0,))
    kept, out = tmp_path / "grid.json", tmp_path / "fit.json"
    kept.write_text(json.dumps(fitting.fit_to_json(fit)))

    def never(args: argparse.Namespace) -> fitting.Fit:
        raise AssertionError("--scores must not run the sets")

    assert fitting.fitting_script(argparse.ArgumentParser(), never, ["--scores", str(kept), "--json", str(out)]) == 0
    again = json.loads(out.read_text())
    assert again["fitted"] == [1.0] and again["leave_one_out"]["b"] == {"point": [0.0], "held_out": 0.5, "settings": 0.7}
    assert "fitted on all sets: sentence_weight = 1 (settings today: 1)" in capsys.readouterr().out
