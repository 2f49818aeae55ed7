"""Retrieval hit@k of a LabelledRagDataset eval, split by where each question's reference context comes from:
body text, or a bibliography (reference list). Generated datasets ask questions about reference lists too
("according to the source ...", "how can they be accessed?"); this shows how much of a miss rate is theirs.

    .venv/bin/rag eval DATASET/rag_dataset.json --corpus DATASET/source_files --json > /tmp/eval.json
    .venv/bin/python eval/bibliography_split.py /tmp/eval.json DATASET/rag_dataset.json

A context counts as bibliography when it holds at least four reference markers ("last accessed", "(2019)",
"arXiv", "IEEE", "pp."). Not part of the product or of the gate: an analysis aid.
"""

from __future__ import annotations

import json
import re
import sys

REFERENCE_MARKERS = re.compile(r"last accessed|\(\d{4}\)|arXiv|IEEE|\bpp\.")
MIN_MARKERS = 4
KS = (1, 2, 3, 5)


def is_bibliography(contexts: list[str]) -> bool:
    return len(REFERENCE_MARKERS.findall(" ".join(contexts))) >= MIN_MARKERS


def main(eval_json: str, dataset_json: str) -> None:
    rows = json.load(open(eval_json, encoding="utf-8"))["questions"]
    examples = json.load(open(dataset_json, encoding="utf-8"))["examples"]
    if len(rows) != len(examples):
        sys.exit(f"{eval_json} has {len(rows)} rows but {dataset_json} has {len(examples)} examples: not the same set")
    groups: dict[str, list[dict]] = {"body": [], "bibliography": []}
    for row, example in zip(rows, examples):
        groups["bibliography" if is_bibliography(example["reference_contexts"]) else "body"].append(row)
    for name, group in groups.items():
        if not group:
            continue
        hits = "  ".join(f"hit@{k} {sum(1 for r in group if r['rank'] and r['rank'] <= k) / len(group):.3f}" for k in KS)
        print(f"{name:13} {len(group):3} questions  {hits}")
        for row in group:
            if not row["rank"] or row["rank"] > 2:
                print(f"    {row['id']} rank {row['rank']}: {row['question'][:100]}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
