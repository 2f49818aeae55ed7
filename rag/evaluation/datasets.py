"""Eval files: questions, conversations and LlamaIndex LabelledRagDatasets, read into `EvalSet`s.

The format is detected from the content (see `load_eval_file`); any malformed line is an `EvalError`
naming the file, the line and the problem.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from rag.evaluation.matching import normalise

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
