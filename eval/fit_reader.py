"""Probe: does a pair classifier "does this sentence answer this question?", fitted on SQuAD from the embedder we
ship, pick answering sentences and tell answerable from unanswerable questions on articles it never saw?

The extractive answerer ranks sentences by hand-built evidence (question-word support + cosine) and refuses below
fitted thresholds; it cannot tell an answering sentence from a near miss (entity swapped, negation). This script
measures, with articles left out of fitting, whether a classifier over the frozen all-MiniLM-L6-v2 does better
than cosine alone, before anything of it goes into the product.

Data. For each SQuAD 2.0 question (eval/datasets/squad2_wikipedia), the candidates are the CANDIDATES sentences of
its article (split by the language pack) closest to it by cosine (the project's embedder). A candidate is positive
when it holds one of the answer strings (rag.evaluation.matching.contains_answer: whole words, case-insensitive);
unanswerable questions have only negatives; answerable questions with no positive candidate are skipped (counted).

Models, all scored per candidate, the question's "best candidate score" being the highest of its candidates:
- cosine: the cosine of question and sentence (no fitting);
- bi_lr: logistic regression on [u, v, |u-v|, u*v] of the separate embeddings plus the cosine;
- cross_lr: the same plus the frozen MiniLM run over "question [SEP] sentence" (mean-pooled, normalised: what the
  embedder returns for that text, so the numpy query encoder can compute it at answer time);
- match_lr: cross_lr without the raw u and v, which say what a text is about rather than whether the two match
  (added after the first run: bi_lr and cross_lr fell below cosine, as if they learnt topics of the articles).

Validation: leave one article out (11 folds; each of the three articles with unanswerable questions is held out in
its own fold). Reported per model, on held-out articles only: sentence selection accuracy (the top-scored candidate
is a positive) over answerable questions; on the three articles with unanswerables, the AUC of the best candidate
score (answerable vs unanswerable), and refusal recall / false refusals at the threshold giving FALSE_REFUSALS false
refusals on the training articles (for a fitted model, on inner group-k-fold scores of the training articles, so
the threshold is not picked on in-sample scores); and, to compare models apart from how well a threshold
transfers, the refusal recall at the threshold giving FALSE_REFUSALS on the held-out article itself
(refusal_recall_at_own_threshold: a reference point, not one a product could pick). The shipped article (eval/questions.jsonl) and BlockchainSolana
(positive: the sentence lies inside a reference context, rag.evaluation.matching.lies_in_context) are scored by
models fitted on all of SQuAD: corpora never used in fitting.

Run (about 17 minutes on two busy cores, most of it cross-encoding 36,000 pairs; embeddings are cached under
eval/reports/, which git ignores; the fine-tuning probe adds about 25 minutes):

    PYTHONPATH=$PWD .venv/bin/python eval/fit_reader.py --json eval/fit_reader.json
    PYTHONPATH=$PWD .venv/bin/python eval/fit_reader.py --json eval/fit_reader.json --models "" --finetune 1000
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rag.embedding import load_embedder, load_query_encoder  # noqa: E402
from rag.evaluation.datasets import load_eval_file  # noqa: E402
from rag.evaluation.matching import contains_answer, lies_in_context  # noqa: E402
from rag.language import get_language  # noqa: E402
from rag.loaders import load_document  # noqa: E402
from rag.settings import Settings  # noqa: E402

SEED = 0
CANDIDATES = 8
FALSE_REFUSALS = 0.10  # the refusal threshold is the score below which this share of answerable questions falls
INNER_FOLDS = 3  # group folds inside the training articles that give the scores a threshold is picked on
C_VALUES = (0.1, 1.0)  # inverse L2 strength of the logistic regression on standardised features; both reported
SQUAD = ROOT / "eval/datasets/squad2_wikipedia"
SOLANA = ROOT / "eval/datasets/blockchain_solana"
PAIR_SEPARATOR = " [SEP] "  # the tokenizer reads "[SEP]" in text as its separator token


@dataclass
class Item:
    """One question with its candidate sentences (best cosine first)."""

    group: str  # the article (SQuAD) or corpus name
    question: str
    answerable: bool
    sentences: list[str] = field(default_factory=list)
    sentence_rows: np.ndarray | None = None  # rows of the corpus's sentence vectors
    question_row: int = -1
    labels: np.ndarray | None = None  # per candidate: does it answer
    cosine: np.ndarray | None = None

    @property
    def has_positive(self) -> bool:
        return bool(self.labels is not None and self.labels.any())


@dataclass
class Corpus:
    name: str
    items: list[Item]
    question_vectors: np.ndarray
    sentence_vectors: np.ndarray
    skipped: int  # answerable questions whose answer is in no candidate
    pair_vectors: np.ndarray | None = None  # cross-encoding of every (question, candidate), item-major


def cached_embed(texts: list[str], cache: Path, tag: str) -> np.ndarray:
    """Embed with the project's embedder (torch, batches); cached by the texts' hash, so a rerun is fast."""
    digest = hashlib.sha256("\x1f".join(texts).encode()).hexdigest()[:16]
    path = cache / f"{tag}-{digest}.npy"
    if path.exists():
        return np.load(path)
    vectors = load_embedder(Settings().embed_model).embed(texts, batch_size=64)
    cache.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors)
    return vectors


def cached_embed_each(texts: list[str], cache: Path, tag: str) -> np.ndarray:
    """`cached_embed` keyed by each text: the (question, candidate) pairs change with the labels (a skipped question
    has none), and a change of matching rules should re-embed only the pairs it adds, not all 36,000."""
    names, vectors_path = cache / f"{tag}.json", cache / f"{tag}.npy"
    known: dict[str, np.ndarray] = {}
    if names.exists() and vectors_path.exists():
        known = dict(zip(json.loads(names.read_text(encoding="utf-8")), np.load(vectors_path)))
    missing = [t for t in dict.fromkeys(texts) if t not in known]
    if missing:
        known.update(zip(missing, load_embedder(Settings().embed_model).embed(missing, batch_size=64)))
        cache.mkdir(parents=True, exist_ok=True)
        np.save(vectors_path, np.stack(list(known.values())))
        names.write_text(json.dumps(list(known)), encoding="utf-8")
    return np.stack([known[t] for t in texts]) if texts else np.zeros((0, 384), dtype=np.float32)


def build(name: str, docs: dict[str, str], questions: list[tuple[str, str, bool, object]], label,
          cache: Path) -> Corpus:
    """`questions`: (group, question, answerable, gold); candidates come from the text of `docs[group]`;
    `label(sentence, gold)` says whether a candidate answers."""
    language = get_language("en")
    sentences: list[str] = []
    spans: dict[str, tuple[int, int]] = {}
    for group, text in docs.items():
        start = len(sentences)
        sentences += [" ".join(text[a:b].split()) for a, b in language.split_sentences(text)]
        if len(sentences) - start < CANDIDATES:  # every question gets exactly CANDIDATES (per_item reshapes)
            raise ValueError(f"{name}: document {group!r} has {len(sentences) - start} sentences; the probe "
                             f"needs at least {CANDIDATES} per document: give it a longer document")
        spans[group] = (start, len(sentences))
    sentence_vectors = cached_embed(sentences, cache, f"{name}-sentences")
    question_vectors = cached_embed([q[1] for q in questions], cache, f"{name}-questions")
    items, skipped = [], 0
    for row, (group, question, answerable, gold) in enumerate(questions):
        start, end = spans[group]
        cosine = sentence_vectors[start:end] @ question_vectors[row]
        top = np.argsort(-cosine, kind="stable")[:CANDIDATES]
        item = Item(group, question, answerable, [sentences[start + i] for i in top], start + top, row,
                    np.array([answerable and label(sentences[start + i], gold) for i in top]), cosine[top])
        if answerable and not item.has_positive:
            skipped += 1
            continue
        items.append(item)
    corpus = Corpus(name, items, question_vectors, sentence_vectors, skipped)
    pairs = [f"{item.question}{PAIR_SEPARATOR}{s}" for item in items for s in item.sentences]
    corpus.pair_vectors = cached_embed_each(pairs, cache, f"{name}-pair-vectors")
    return corpus


def squad(cache: Path) -> Corpus:
    rows = [json.loads(line) for line in (SQUAD / "questions.jsonl").read_text(encoding="utf-8").splitlines()]
    docs = {a: (SQUAD / "source_files" / f"{a.replace(':', '')}.txt").read_text(encoding="utf-8")
            for a in sorted({r["article"] for r in rows})}
    questions = [(r["article"], r["question"], bool(r["answers"]), r["answers"]) for r in rows]
    return build("squad", docs, questions, lambda s, gold: any(contains_answer(s, a) for a in gold), cache)


def shipped(cache: Path) -> Corpus:
    docs = {"shipped": "\n\n".join(p.read_text(encoding="utf-8") for p in sorted((ROOT / "corpus").glob("*.txt")))}
    cases = load_eval_file(ROOT / "eval/questions.jsonl").cases
    questions = [("shipped", c.question, c.answerable, c.answers) for c in cases]
    return build("shipped", docs, questions, lambda s, gold: any(contains_answer(s, a) for a in gold), cache)


def solana(cache: Path) -> Corpus:
    folder = SOLANA / "source_files"
    docs = {"solana": "\n\n".join(page.text for path in sorted(folder.glob("*.pdf"))
                                  for page in load_document(path, folder).pages)}
    cases = load_eval_file(SOLANA / "rag_dataset.json").cases
    questions = [("solana", c.question, True, c.reference_contexts) for c in cases]
    return build("solana", docs, questions, lambda s, gold: lies_in_context(s, gold), cache)


# --------------------------------------------------------------------------------------------- features
def features(corpus: Corpus, model: str) -> np.ndarray:
    """Per candidate, item-major: the columns the model reads."""
    u = np.repeat(corpus.question_vectors[[i.question_row for i in corpus.items]], CANDIDATES, axis=0)
    v = corpus.sentence_vectors[np.concatenate([i.sentence_rows for i in corpus.items])]
    cosine = np.concatenate([i.cosine for i in corpus.items])[:, None]
    if model == "cosine":
        return cosine
    parts = [np.abs(u - v), u * v, cosine]
    if model in ("bi_lr", "cross_lr"):
        parts = [u, v, *parts]
    if model in ("cross_lr", "match_lr"):
        parts.append(corpus.pair_vectors)
    return np.hstack(parts).astype(np.float32)


def fit(x: np.ndarray, y: np.ndarray, c: float):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000, random_state=SEED)).fit(x, y)


def scorer(model: str, c: float, x: np.ndarray, y: np.ndarray):
    """A function candidate features -> scores, fitted on (x, y) (cosine needs no fitting)."""
    if model == "cosine":
        return lambda rows: rows[:, 0]
    pipeline = fit(x, y, c)
    return pipeline.decision_function


def per_item(scores: np.ndarray) -> np.ndarray:
    return scores.reshape(-1, CANDIDATES)


def selection(items: list[Item], scores: np.ndarray) -> list[bool]:
    """Per answerable item: is its top-scored candidate a positive?"""
    grid = per_item(scores)
    return [bool(item.labels[int(np.argmax(row))]) for item, row in zip(items, grid) if item.answerable]


def threshold_for(best_answerable: np.ndarray) -> float:
    return float(np.quantile(best_answerable, FALSE_REFUSALS))


def auc(best: np.ndarray, answerable: np.ndarray) -> float | None:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(answerable, best)) if answerable.any() and (~answerable).any() else None


# ------------------------------------------------------------------------------------------- validation
def leave_article_out(corpus: Corpus, model: str, c: float) -> dict:
    from sklearn.model_selection import GroupKFold

    x = features(corpus, model)
    y = np.concatenate([i.labels for i in corpus.items])
    groups = np.array([i.group for i in corpus.items])
    row_groups = np.repeat(groups, CANDIDATES)
    answerable = np.array([i.answerable for i in corpus.items])
    per_article: dict[str, dict] = {}
    selected: list[bool] = []
    refusal: dict[str, list] = {"best": [], "answerable": [], "threshold": []}
    started = time.perf_counter()
    for article in sorted(set(groups)):
        held = row_groups == article
        score = scorer(model, c, x[~held], y[~held])
        scores = score(x[held])
        items = [i for i in corpus.items if i.group == article]
        hits = selection(items, scores)
        selected += hits
        entry = {"questions": len(items), "selection_accuracy": round(float(np.mean(hits)), 4)}
        held_answerable = answerable[groups == article]
        if (~held_answerable).any():  # an article with unanswerable questions: pick a threshold, refuse
            train_items = [i for i in corpus.items if i.group != article]
            train_x, train_y = x[~held], y[~held]
            train_groups = row_groups[~held]
            if model == "cosine":
                inner = per_item(train_x[:, 0])
            else:  # scores of the training articles from models that did not see them
                inner = np.empty(len(train_y))
                for fit_rows, out_rows in GroupKFold(INNER_FOLDS).split(train_x, train_y, train_groups):
                    inner[out_rows] = scorer(model, c, train_x[fit_rows], train_y[fit_rows])(train_x[out_rows])
                inner = per_item(inner)
            train_answerable = np.array([i.answerable for i in train_items])
            threshold = threshold_for(inner.max(axis=1)[train_answerable])
            best = per_item(scores).max(axis=1)
            own = threshold_for(best[held_answerable])  # a reference point, not a threshold one could deploy
            entry.update({"unanswerable": int((~held_answerable).sum()),
                          "refusal_recall_at_own_threshold": round(float((best[~held_answerable] < own).mean()), 4),
                          "auc": round(auc(best, held_answerable), 4),
                          "refusal_recall": round(float((best[~held_answerable] < threshold).mean()), 4),
                          "false_refusals": round(float((best[held_answerable] < threshold).mean()), 4)})
            refusal["best"].append(best)
            refusal["answerable"].append(held_answerable)
            refusal["threshold"].append(np.full(len(best), threshold))
        per_article[article] = entry
    best = np.concatenate(refusal["best"])
    held_answerable = np.concatenate(refusal["answerable"])
    threshold = np.concatenate(refusal["threshold"])
    return {
        "selection_accuracy": round(float(np.mean(selected)), 4),
        "auc_three_articles": round(auc(best, held_answerable), 4),
        "refusal_recall": round(float((best[~held_answerable] < threshold[~held_answerable]).mean()), 4),
        "false_refusals": round(float((best[held_answerable] < threshold[held_answerable]).mean()), 4),
        "refusal_recall_at_own_threshold_mean": round(float(np.mean(
            [e["refusal_recall_at_own_threshold"] for e in per_article.values() if "unanswerable" in e])), 4),
        "seconds_all_folds": round(time.perf_counter() - started, 1),
        "per_article": per_article,
    }


def unseen(train: Corpus, others: list[Corpus], model: str, c: float) -> dict:
    """Fitted on all of SQuAD, scored on corpora never used in fitting; also the time to fit."""
    x = features(train, model)
    y = np.concatenate([i.labels for i in train.items])
    started = time.perf_counter()
    score = scorer(model, c, x, y)
    out: dict = {"seconds_to_fit_all_squad": round(time.perf_counter() - started, 2)}
    for corpus in others:
        scores = score(features(corpus, model))
        hits = selection(corpus.items, scores)
        answerable = np.array([i.answerable for i in corpus.items])
        best = per_item(scores).max(axis=1)
        out[corpus.name] = {"questions": len(corpus.items), "skipped": corpus.skipped,
                            "selection_accuracy": round(float(np.mean(hits)), 4)}
        if (~answerable).any():
            out[corpus.name]["auc"] = round(auc(best, answerable), 4)
    return out


def time_per_question(corpus: Corpus, settings: Settings, repeats: int = 20) -> dict:
    """Median time to cross-encode one question's candidates (the extra work a cross feature costs at answer
    time; sentence vectors come from the index) with the numpy query encoder the product answers with, and,
    measured in the same loop as a baseline against the machine's load, the time to embed the question alone."""
    encoder = load_query_encoder(settings)
    rng = np.random.default_rng(SEED)
    pairs, alone = [], []
    for index in rng.choice(len(corpus.items), size=repeats, replace=False):
        item = corpus.items[int(index)]
        started = time.perf_counter()
        encoder.embed([item.question])
        alone.append(time.perf_counter() - started)
        started = time.perf_counter()
        encoder.embed([f"{item.question}{PAIR_SEPARATOR}{s}" for s in item.sentences])
        pairs.append(time.perf_counter() - started)
    return {"encoder": type(encoder).__name__, "median_ms_8_pairs": round(1000 * statistics.median(pairs), 1),
            "median_ms_question_alone": round(1000 * statistics.median(alone), 1),
            "ratio": round(statistics.median(pairs) / statistics.median(alone), 1)}


def finetune_probe(corpus: Corpus, questions: int, epochs: int, layers: int) -> dict:
    """(c) Fine-tune the pair classifier itself, on one split: fitted on `questions` answerable questions of the
    eight articles without unanswerables, scored on the three that have them, beside cosine and match_lr fitted
    on the same eight. Only the top `layers` of MiniLM and a linear head on its mean-pooled output are trained
    (LoRA on every layer, with peft, would back-propagate through all six, which two shared cores cannot
    afford for a probe), with binary cross-entropy per candidate, seeded. Not group-k-fold: one fine-tuning costs minutes
    here, so this says whether fine-tuning is worth a proper run, not what it would reach."""
    import torch

    torch.manual_seed(SEED)
    base = load_embedder(Settings().embed_model)._model
    tokenizer, bert = base.tokenizer, copy.deepcopy(base[0].auto_model)
    for parameter in bert.parameters():
        parameter.requires_grad = False
    trained = [p for block in bert.encoder.layer[-layers:] for p in block.parameters()]
    for parameter in trained:
        parameter.requires_grad = True
    head = torch.nn.Linear(bert.config.hidden_size, 1)
    optimiser = torch.optim.AdamW([{"params": trained, "lr": 3e-5}, {"params": head.parameters(), "lr": 1e-3}])
    held = {i.group for i in corpus.items if not i.answerable}
    pool = [n for n, i in enumerate(corpus.items) if i.group not in held]
    rng = np.random.default_rng(SEED)
    chosen = rng.choice(pool, size=min(questions, len(pool)), replace=False)
    pairs = [(f"{corpus.items[n].question}{PAIR_SEPARATOR}{s}", float(label)) for n in chosen
             for s, label in zip(corpus.items[n].sentences, corpus.items[n].labels)]

    def logits(texts: list[str]) -> torch.Tensor:
        batch = tokenizer(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
        hidden = bert(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        return head((hidden * mask).sum(1) / mask.sum(1)).squeeze(-1)

    started = time.perf_counter()
    bert.train()
    loss_fn = torch.nn.BCEWithLogitsLoss()
    for _ in range(epochs):
        order = rng.permutation(len(pairs))
        for start in range(0, len(order), 32):
            batch = [pairs[k] for k in order[start : start + 32]]
            loss = loss_fn(logits([t for t, _ in batch]), torch.tensor([y for _, y in batch]))
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    fit_seconds = time.perf_counter() - started
    bert.eval()
    test = [i for i in corpus.items if i.group in held]
    texts = [f"{i.question}{PAIR_SEPARATOR}{s}" for i in test for s in i.sentences]
    with torch.no_grad():
        tuned = np.concatenate([logits(texts[k : k + 64]).numpy() for k in range(0, len(texts), 64)])
    is_test = np.repeat([i.group in held for i in corpus.items], CANDIDATES)
    x = features(corpus, "match_lr")
    y = np.concatenate([i.labels for i in corpus.items])
    fitted = scorer("match_lr", 0.1, x[~is_test], y[~is_test])(x[is_test])
    answerable = np.array([i.answerable for i in test])
    out: dict = {"trained": f"top {layers} of {bert.config.num_hidden_layers} layers + linear head",
                 "fitted_on_questions": int(len(chosen)), "pairs": len(pairs), "epochs": epochs,
                 "scored_on": sorted(held), "seconds_to_fit": round(fit_seconds, 1)}
    for name, scores in (("cosine", np.concatenate([i.cosine for i in test])), ("match_lr(C=0.1)", fitted),
                         ("finetuned", tuned)):
        best = per_item(scores).max(axis=1)
        own = threshold_for(best[answerable])
        out[name] = {"selection_accuracy": round(float(np.mean(selection(test, scores))), 4),
                     "auc": round(auc(best, answerable), 4),
                     "refusal_recall_at_own_threshold": round(float((best[~answerable] < own).mean()), 4)}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="write the results here (e.g. eval/fit_reader.json)")
    parser.add_argument("--cache", type=Path, default=ROOT / "eval/reports/fit_reader_cache")
    parser.add_argument("--models", default="cosine,bi_lr,cross_lr,match_lr",
                        help="comma-separated; empty: keep the models of an existing --json file")
    parser.add_argument("--finetune", type=int, default=0, metavar="QUESTIONS",
                        help="also run the fine-tuning probe on this many training questions (0: skip)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--layers", type=int, default=2, help="top layers of MiniLM the probe trains")
    args = parser.parse_args(argv)
    np.random.seed(SEED)
    import torch

    torch.manual_seed(SEED)
    cached = args.cache.is_dir() and any(args.cache.iterdir())  # then the time below is not embedding's
    started = time.perf_counter()
    train = squad(args.cache)
    others = [shipped(args.cache), solana(args.cache)]
    data_seconds = time.perf_counter() - started
    counts = {c.name: {"questions": len(c.items), "answerable": sum(i.answerable for i in c.items),
                       "unanswerable": sum(not i.answerable for i in c.items), "skipped_no_positive": c.skipped,
                       "positive_candidates": int(sum(i.labels.sum() for i in c.items))}
              for c in [train, *others]}
    print(json.dumps(counts), flush=True)
    results: dict = {"candidates": CANDIDATES, "false_refusal_target": FALSE_REFUSALS, "seed": SEED,
                     "data": counts, "seconds_data_and_embedding": round(data_seconds, 1),
                     "embeddings_from_cache": cached, "models": {}}
    for model in filter(None, args.models.split(",")):
        for c in ((None,) if model == "cosine" else C_VALUES):
            key = model if c is None else f"{model}(C={c})"
            entry = {"leave_article_out": leave_article_out(train, model, c or 1.0),
                     "fitted_on_squad_scored_elsewhere": unseen(train, others, model, c or 1.0)}
            results["models"][key] = entry
            print(key, json.dumps({k: v for k, v in entry["leave_article_out"].items() if k != "per_article"}),
                  json.dumps(entry["fitted_on_squad_scored_elsewhere"]), flush=True)
    results["answer_time"] = time_per_question(train, Settings())
    print(json.dumps(results["answer_time"]))
    if args.finetune:
        results["finetune_probe"] = finetune_probe(train, args.finetune, args.epochs, args.layers)
        print(json.dumps(results["finetune_probe"]))
    if args.json:
        if args.json.exists():  # what this run did not measure (the models, the probe) stays as the file has it
            kept = json.loads(args.json.read_text(encoding="utf-8"))
            results = kept | {k: v for k, v in results.items() if k != "models" or args.models}
        args.json.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
