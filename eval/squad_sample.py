"""Draw the fixed, stratified SQuAD 2.0 sample that the CI gate runs (`eval/datasets/squad2_wikipedia/sample.jsonl`).

    .venv/bin/python eval/squad_sample.py            # rewrites sample.jsonl; the same file every time
    .venv/bin/python eval/squad_sample.py --check    # exit 1 if sample.jsonl is not what the script draws

Strata are (article, answerable or not): every article gives ANSWERABLE answerable questions, and each of
the three articles that have unanswerable ones also gives UNANSWERABLE of those, so refusals weigh more
than in the full set (11% unanswerable) without one article dominating. Each stratum is sampled with
`random.Random(SEED)` from its questions in file order, and the sample keeps the file's order. Sized so
the whole gate (shipped sets, BlockchainSolana and this sample) runs in about 5 minutes on two cores;
the full 5,137 questions stay in questions.jsonl for runs by hand (`rag eval eval/sets.toml --set
squad2_full`).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections import defaultdict
from pathlib import Path

FOLDER = Path(__file__).resolve().parent / "datasets" / "squad2_wikipedia"
SEED = 2018  # any fixed number; the year SQuAD 2.0 was published
ANSWERABLE = 24  # per article
UNANSWERABLE = 32  # per article that has unanswerable questions


def draw(lines: list[str], answerable: int = ANSWERABLE, unanswerable: int = UNANSWERABLE, seed: int = SEED) -> list[str]:
    """The sampled lines, in file order: per (article, answerable) stratum, `answerable` or
    `unanswerable` lines (all of them when a stratum is smaller)."""
    strata: dict[tuple[str, bool], list[int]] = defaultdict(list)
    for n, line in enumerate(lines):
        question = json.loads(line)
        strata[(question["article"], bool(question["answers"]))].append(n)
    rng = random.Random(seed)
    chosen: set[int] = set()
    for (article, has_answer), members in sorted(strata.items()):
        size = answerable if has_answer else unanswerable
        chosen.update(rng.sample(members, min(size, len(members))))
    return [lines[n] for n in sorted(chosen)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare with the committed sample.jsonl")
    args = parser.parse_args(argv)
    lines = [line for line in (FOLDER / "questions.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
    text = "".join(line + "\n" for line in draw(lines))
    target = FOLDER / "sample.jsonl"
    if args.check:
        same = target.is_file() and target.read_text(encoding="utf-8") == text
        print(f"{target}: {'matches' if same else 'differs from'} the sample this script draws")
        return 0 if same else 1
    target.write_text(text, encoding="utf-8")
    kinds = [json.loads(line)["kind"] for line in text.splitlines()]
    print(f"wrote {target}: {len(kinds)} questions, {kinds.count('unanswerable')} unanswerable")
    return 0


if __name__ == "__main__":
    sys.exit(main())
