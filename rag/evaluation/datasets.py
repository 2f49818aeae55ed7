"""Eval files: questions, conversations and LlamaIndex LabelledRagDatasets, read into `EvalSet`s.

The format is detected from the content (see `load_eval_file`); any malformed line is an `EvalError`
naming the file, the line and the problem.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from rag.evaluation.matching import normalise

try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

FileKind = Literal["questions", "conversations", "labelled"]
FILE_KINDS: tuple[FileKind, ...] = ("questions", "conversations", "labelled")
Progress = Callable[[str, int, int], None]  # (stage, done, total)


class EvalError(Exception):
    """A bad eval file, thresholds file or corpus; the message names the file, the place and the fix."""


@dataclass(frozen=True)
class Case:
    """One question to ask: a line of a questions file, a turn of a conversation, or a dataset example."""

    id: str
    question: str
    answers: tuple[str, ...] | None = None  # None for a LabelledRagDataset; () = must refuse
    kind: str | None = None
    reference_answer: str | None = None
    reference_contexts: tuple[str, ...] = ()

    @property
    def answerable(self) -> bool:
        return self.answers is None or bool(self.answers)

    @property
    def expected(self) -> str:
        if self.answers is None:
            return self.reference_answer or ""
        return " | ".join(self.answers) if self.answers else "(refusal)"


@dataclass
class EvalSet:
    path: Path
    kind: FileKind
    conversations: list[list[Case]]  # a questions file is conversations of one turn each

    @property
    def cases(self) -> list[Case]:
        return [case for conversation in self.conversations for case in conversation]


_QUESTION_FORMAT = '{"id": "q01", "question": "...", "answers": ["33"], "kind": "fact"}'
_CONVERSATION_FORMAT = '{"id": "c01", "turns": [{"question": "...", "answers": ["..."]}, ...]}'
_LABELLED_FORMAT = '{"examples": [{"query": "...", "reference_answer": "...", "reference_contexts": ["..."]}]}'


def load_eval_file(path: Path | str) -> EvalSet:
    """Read a questions file, a conversations file or a LabelledRagDataset, detected from the content.

    A `.json` file is one JSON document (a LabelledRagDataset); anything else is JSON Lines whose first
    object decides: "turns" makes it a conversations file, otherwise a questions file.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise EvalError(f"{path}: no such file: give a questions .jsonl, a conversations .jsonl or a rag_dataset.json") from None
    except (OSError, UnicodeDecodeError) as err:
        raise EvalError(f"{path}: cannot read it as UTF-8 text ({err})") from None
    if not text.strip():
        raise EvalError(f"{path}: the file is empty: write one question a line, e.g. {_QUESTION_FORMAT}")
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise EvalError(f"{path} line {err.lineno} column {err.colno}: not valid JSON ({err.msg})") from None
        if not isinstance(data, dict) or "examples" not in data:
            raise EvalError(
                f"{path}: a .json eval file must be a LlamaIndex LabelledRagDataset, {_LABELLED_FORMAT}; "
                f"for questions or conversations use JSON Lines (.jsonl)"
            )
        return EvalSet(path, "labelled", [[case] for case in _labelled_cases(path, data)])
    return _load_jsonl(path, text)


def _load_jsonl(path: Path, text: str) -> EvalSet:
    kind: FileKind | None = None
    first_line = 0
    conversations: list[list[Case]] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path} line {number}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            raise EvalError(f"{where}: not valid JSON ({err.msg} at column {err.colno}); each line is one object like {_QUESTION_FORMAT}") from None
        if isinstance(obj, dict) and "examples" in obj:
            return EvalSet(path, "labelled", [[case] for case in _labelled_cases(path, obj)])
        if not isinstance(obj, dict):
            raise EvalError(f"{where}: expected a JSON object like {_QUESTION_FORMAT}, got {type(obj).__name__}")
        line_kind: FileKind = "conversations" if "turns" in obj else "questions"
        if kind is None:
            kind, first_line = line_kind, number
        elif line_kind != kind:
            raise EvalError(
                f"{where}: this line is a {line_kind[:-1]} but line {first_line} is a {kind[:-1]}: "
                "keep questions and conversations in separate files"
            )
        item_id = _field(obj, "id", str, where, _QUESTION_FORMAT if kind == "questions" else _CONVERSATION_FORMAT)
        if item_id in seen:
            raise EvalError(f"{where}: id {item_id!r} is already used on line {seen[item_id]}: ids must be unique")
        seen[item_id] = number
        if kind == "questions":
            conversations.append([_question_case(obj, item_id, where)])
            continue
        turns = obj["turns"]
        if not isinstance(turns, list) or not turns:
            raise EvalError(f"{where}: \"turns\" must be a non-empty list of {{\"question\", \"answers\"}} objects")
        conversation = []
        for n, turn in enumerate(turns, start=1):
            turn_where = f"{where} turn {n}"
            if not isinstance(turn, dict):
                raise EvalError(f"{turn_where}: expected an object {{\"question\": ..., \"answers\": [...]}}, got {type(turn).__name__}")
            conversation.append(_question_case(turn, f"{item_id}.t{n}", turn_where))
        conversations.append(conversation)
    assert kind is not None
    return EvalSet(path, kind, conversations)


def _field(obj: dict, name: str, kind: type, where: str, example: str):
    if name not in obj:
        raise EvalError(f"{where}: missing \"{name}\"; expected {example}")
    value = obj[name]
    if not isinstance(value, kind) or (kind is str and not value.strip()):
        wanted = "a non-empty string" if kind is str else f"a {kind.__name__}"
        raise EvalError(f"{where}: \"{name}\" must be {wanted}, got {json.dumps(value)[:80]}")
    return value


def _question_case(obj: dict, case_id: str, where: str) -> Case:
    question = _field(obj, "question", str, where, _QUESTION_FORMAT)
    answers = _field(obj, "answers", list, where, _QUESTION_FORMAT)
    for answer in answers:
        if not isinstance(answer, str) or not normalise(answer):
            raise EvalError(
                f"{where}: every answer must be a string with a letter or digit, got {json.dumps(answer)}; "
                "use an empty list [] when the documents do not answer"
            )
    kind = obj.get("kind")
    if kind is not None and (not isinstance(kind, str) or not kind):
        raise EvalError(f"{where}: \"kind\" must be a string such as \"fact\", \"paraphrase\" or \"unanswerable\"")
    if kind == "unanswerable" and answers:
        raise EvalError(f"{where}: kind \"unanswerable\" but answers {answers}: make answers [] or change the kind")
    if kind is not None and kind != "unanswerable" and not answers:
        raise EvalError(f"{where}: answers is [] (must refuse) but kind is {kind!r}: set kind to \"unanswerable\" or add answers")
    return Case(case_id, question.strip(), tuple(answers), kind)


def _labelled_cases(path: Path, data: dict) -> list[Case]:
    examples = data["examples"]
    if not isinstance(examples, list) or not examples:
        raise EvalError(f"{path}: \"examples\" must be a non-empty list; expected {_LABELLED_FORMAT}")
    width = len(str(len(examples)))
    cases = []
    for n, example in enumerate(examples, start=1):
        where = f"{path} examples[{n - 1}]"
        if not isinstance(example, dict):
            raise EvalError(f"{where}: expected an object, got {type(example).__name__}")
        query = _field(example, "query", str, where, _LABELLED_FORMAT)
        reference = example.get("reference_answer")
        if not isinstance(reference, str) or not reference.strip():
            raise EvalError(f"{where}: \"reference_answer\" must be a non-empty string; expected {_LABELLED_FORMAT}")
        contexts = example.get("reference_contexts") or []
        if not isinstance(contexts, list) or not all(isinstance(c, str) for c in contexts):
            raise EvalError(f"{where}: \"reference_contexts\" must be a list of strings")
        cases.append(Case(f"ex{n:0{width}d}", query.strip(), None, None, reference, tuple(contexts)))
    return cases


# --------------------------------------------------------------------------------------------------
# Eval sets: an eval file with the corpus it is about, named; from a manifest, a folder or the command line

MANIFEST_NAME = "sets.toml"
# In a folder of dataset folders, the eval file of each, first found wins: the fixed sample before the
# full question file it was drawn from (the full one is for running by hand).
DATASET_FILES = ("rag_dataset.json", "sample.jsonl", "questions.jsonl", "conversations.jsonl")
CORPUS_FOLDER = "source_files"
_MANIFEST_FORMAT = ('[[sets]]\nname = "solana"\nquestions = "datasets/blockchain_solana/rag_dataset.json"\n'
                    'corpus = "datasets/blockchain_solana/source_files"\ngate = "labelled"   # optional')
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclass(frozen=True)
class EvalSpec:
    """One eval set: a questions, conversations or LabelledRagDataset file, the corpus its questions are
    about (None: the command's --corpus / --index), and the thresholds table that gates it (None: not
    gated)."""

    name: str
    file: Path
    corpus: Path | None = None
    gate: str | None = None
    default: bool = True  # run when the manifest is given without --set (False: only by name)


def load_manifest(path: Path | str) -> list[EvalSpec]:
    """Read a sets manifest (TOML, `[[sets]]` tables with name, questions, corpus, optional gate and
    default); paths are relative to the manifest. Every named file and folder must exist."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EvalError(f"{path}: no such sets manifest") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise EvalError(f"{path}: not valid TOML ({err})") from None
    tables = data.get("sets")
    if not isinstance(tables, list) or not tables or set(data) != {"sets"}:
        raise EvalError(f"{path}: a sets manifest holds only [[sets]] tables, e.g.\n{_MANIFEST_FORMAT}")
    specs: list[EvalSpec] = []
    for n, table in enumerate(tables, start=1):
        where = f"{path} [[sets]] #{n}"
        unknown = set(table) - {"name", "questions", "corpus", "gate", "default"}
        if unknown:
            raise EvalError(f"{where}: unknown key(s) {sorted(unknown)}; known: name, questions, corpus, gate, default")
        name = _field(table, "name", str, where, _MANIFEST_FORMAT)
        if not _NAME.match(name):
            raise EvalError(f"{where}: name {name!r} may hold only letters, digits, '_', '-' and '.' (it names a table and a folder)")
        if name in {s.name for s in specs}:
            raise EvalError(f"{where}: name {name!r} is already used by an earlier set: names must be unique")
        file = Path(os.path.normpath(path.parent / _field(table, "questions", str, where, _MANIFEST_FORMAT)))
        corpus = Path(os.path.normpath(path.parent / _field(table, "corpus", str, where, _MANIFEST_FORMAT)))
        if not file.is_file():
            raise EvalError(f"{where}: questions file {file} does not exist: fix the path (relative to {path.parent})")
        if not corpus.is_dir():
            raise EvalError(f"{where}: corpus {corpus} is not a folder: fix the path (relative to {path.parent})")
        gate = table.get("gate")
        if gate is not None and (not isinstance(gate, str) or not gate):
            raise EvalError(f"{where}: \"gate\" must name a table of the thresholds file, got {gate!r}")
        default = table.get("default", True)
        if not isinstance(default, bool):
            raise EvalError(f"{where}: \"default\" must be true or false, got {default!r}")
        specs.append(EvalSpec(name, file, corpus, gate, default))
    return specs


def resolve_sets(paths: Sequence[Path | str], names: Sequence[str] = ()) -> list[EvalSpec]:
    """The eval sets named on the command line: eval files (each gated by the table of its file kind,
    on the command's corpus), manifests (`*.toml`), and folders (holding a sets.toml, or dataset folders
    each with one eval file of DATASET_FILES and its corpus in source_files/, not gated). `names` picks sets by name
    (including those marked default = false); empty means every default set."""
    specs: list[EvalSpec] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            specs += load_manifest(path / MANIFEST_NAME) if (path / MANIFEST_NAME).is_file() else _dataset_folders(path)
        elif path.suffix.lower() == ".toml":
            specs += load_manifest(path)
        else:
            specs.append(EvalSpec(path.stem, path, None, load_eval_file(path).kind))
    seen: dict[str, int] = {}
    for n, spec in enumerate(specs):  # two files named questions.jsonl: questions, questions-2
        seen[spec.name] = seen.get(spec.name, 0) + 1
        if seen[spec.name] > 1:
            specs[n] = replace(spec, name=f"{spec.name}-{seen[spec.name]}")
    if not names:
        return [s for s in specs if s.default]
    unknown = [n for n in names if n not in {s.name for s in specs}]
    if unknown:
        raise EvalError(f"no eval set named {', '.join(map(repr, unknown))}; the sets are: {', '.join(s.name for s in specs)}")
    return [s for s in specs if s.name in names]


def _dataset_folders(folder: Path) -> list[EvalSpec]:
    specs = []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        file = next((sub / f for f in DATASET_FILES if (sub / f).is_file()), None)
        if file is not None and (sub / CORPUS_FOLDER).is_dir():
            load_eval_file(file)  # a malformed file is reported before anything runs
            specs.append(EvalSpec(sub.name, file, sub / CORPUS_FOLDER))  # gated only through a manifest
    if not specs:
        raise EvalError(
            f"{folder}: no eval sets: give a folder with a {MANIFEST_NAME}, or one whose sub-folders each hold "
            f"one of {', '.join(DATASET_FILES)} and a {CORPUS_FOLDER}/ folder with the documents"
        )
    return specs
