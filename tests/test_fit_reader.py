"""eval/fit_reader.py, the reader probe: candidates, labels, skips and left-out scoring on two small articles made
here, embedded with the real bundled embedder (its cosine ranking decides the candidates)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from rag.evaluation.matching import contains_answer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "eval"))
import fit_reader  # noqa: E402

CATS = ("Cats sleep for about fifteen hours a day. A cat's whiskers sense the width of openings. "
        "Kittens open their eyes after one week. The oldest cat on record lived to 38 years. "
        "Cats purr when content and sometimes when hurt. Domestic cats descend from the African wildcat. "
        "A group of cats is called a clowder. Cats cannot taste sweetness. "
        "Most cats dislike water. The Maine Coon is a large breed of cat.")
TRAINS = ("The first public railway opened in 1825 in England. Steam locomotives burned coal to boil water. "
          "The Shinkansen began service in Japan in 1964. Diesel engines replaced steam after the Second World War. "
          "The longest railway is the Trans-Siberian line. Maglev trains float above the track on magnets. "
          "Rail gauges differ between countries. Freight trains carry most of the coal in America. "
          "Signals keep trains apart on the same track. Electric trains draw power from overhead wires.")
QUESTIONS = [
    ("cats", "How long do cats sleep each day?", True, ["fifteen hours"]),
    ("cats", "What is a group of cats called?", True, ["clowder"]),
    ("cats", "What is a group of dogs called?", False, []),  # unanswerable: only negatives
    ("cats", "Who painted the Mona Lisa?", True, ["Leonardo"]),  # the answer is in no sentence: skipped
    ("trains", "When did the Shinkansen begin service?", True, ["1964"]),
    ("trains", "Where did the first public railway open?", True, ["England"]),
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> fit_reader.Corpus:
    cache = tmp_path_factory.mktemp("cache")
    return fit_reader.build("tiny", {"cats": CATS, "trains": TRAINS}, QUESTIONS,
                            lambda s, gold: any(contains_answer(s, a) for a in gold), cache)


def test_candidates_labels_and_skips(corpus: fit_reader.Corpus) -> None:
    assert corpus.skipped == 1  # the Mona Lisa
    assert [i.question for i in corpus.items] == [q[1] for q in QUESTIONS if "Mona" not in q[1]]
    sleep, clowder, dogs, shinkansen, railway = corpus.items
    assert all(len(i.sentences) == fit_reader.CANDIDATES for i in corpus.items)
    assert all(list(i.cosine) == sorted(i.cosine, reverse=True) for i in corpus.items)
    assert sleep.sentences[int(np.argmax(sleep.labels))] == "Cats sleep for about fifteen hours a day."
    assert int(sleep.labels.sum()) == 1 and int(shinkansen.labels.sum()) == 1
    assert not dogs.labels.any() and not dogs.answerable
    trains = {TRAINS[a:b] for a, b in fit_reader.get_language("en").split_sentences(TRAINS)}
    assert len(trains) == 10 and set(railway.sentences) <= trains  # a question's candidates are its article's
    assert corpus.pair_vectors.shape == (5 * fit_reader.CANDIDATES, 384)


def test_cosine_left_out_scores_every_article_once(corpus: fit_reader.Corpus) -> None:
    result = fit_reader.leave_article_out(corpus, "cosine", 1.0)
    assert sorted(result["per_article"]) == ["cats", "trains"]
    assert result["per_article"]["trains"] == {"questions": 2, "selection_accuracy": 1.0}
    cats = result["per_article"]["cats"]
    assert (cats["questions"], cats["unanswerable"], cats["selection_accuracy"]) == (3, 1, 1.0)
    # The threshold comes from the trains article's answerable questions: its 10% quantile of best cosines.
    trains_best = [i.cosine.max() for i in corpus.items if i.group == "trains"]
    threshold = float(np.quantile(trains_best, fit_reader.FALSE_REFUSALS))
    dogs_best = corpus.items[2].cosine.max()
    assert cats["refusal_recall"] == float(dogs_best < threshold)


def test_a_document_too_short_for_the_candidates_is_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"tiny: document 'short' has 2 sentences; the probe needs at least 8"):
        fit_reader.build("tiny", {"short": "One sentence here. And another one."}, [], lambda s, g: False, tmp_path)


def test_pair_vectors_are_cached_per_text(tmp_path: Path, embedder) -> None:
    first = fit_reader.cached_embed_each(["a [SEP] cats purr", "b [SEP] trains run"], tmp_path, "pairs")
    second = fit_reader.cached_embed_each(["b [SEP] trains run", "c [SEP] dogs bark"], tmp_path, "pairs")
    assert json.loads((tmp_path / "pairs.json").read_text()) == ["a [SEP] cats purr", "b [SEP] trains run",
                                                                 "c [SEP] dogs bark"]
    assert np.array_equal(second[0], first[1])  # read back, not embedded again
    assert np.allclose(second[1], embedder.embed(["c [SEP] dogs bark"])[0], atol=1e-6)
