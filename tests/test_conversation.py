"""Conversations without an LLM: follow-up rewriting (exact standalone queries), history in `rag chat`,
"/new", and the Markdown export with citations."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from rag.chat import Assistant, condense, conversation_markdown, is_follow_up, record_turn
from rag.schema import Answer, Turn
from rag.settings import Settings
from tests.conftest import REPO


def turn(question: str, short_answer: str | None = None, query: str | None = None) -> Turn:
    return Turn(question, Answer("...", [], refused=False, query=query or question, short_answer=short_answer))


def after(question: str) -> list[Turn]:
    return [turn(question)]


@pytest.mark.parametrize(
    ("previous", "follow_up", "standalone"),
    [
        ("Tell me about the City University of Hong Kong (Dongguan)", "When did it open?",
         "When did it open? (City University Hong Kong (Dongguan))"),
        ("Which facility has reduced the time from factory to aircraft cabin for cross-border trade?",
         "When was it launched?", "When was it launched? (facility reduced factory aircraft cabin cross-border trade)"),
        ("How many agreements were signed in Hong Kong?", "What about Shenzhen?",
         "What about Shenzhen? (agreements signed Hong Kong)"),
        ("How many agreements were signed at the conference?", "And the value?",
         "And the value? (agreements signed conference)"),
        ("When did the conference take place?", "Where?", "Where? (conference take place)"),
        # A question that stands on its own is left alone, history or not.
        ("How many agreements were signed at the conference?", "How many representatives attended the conference?",
         "How many representatives attended the conference?"),
    ],
)
def test_condense_appends_the_previous_topic_to_follow_ups(previous: str, follow_up: str, standalone: str) -> None:
    assert condense(follow_up, after(previous)) == standalone


def test_condense_carries_the_last_short_answer_and_the_first_topic_without_nesting() -> None:
    assert condense("When did it open?", None) == "When did it open?"
    assert condense("When did it open?", []) == "When did it open?"
    history: list[Turn] = []
    turns = [("Which new university campus in Dongguan is mentioned in the article?", "City University of Hong Kong"),
             ("When did it open?", "six months ago"),
             ("What has it contributed for ships?", None)]
    queries = []
    for question, short in turns:
        queries.append(condense(question, history))
        history.append(turn(question, short, queries[-1]))
    assert queries[:2] == ["Which new university campus in Dongguan is mentioned in the article?",
                           "When did it open? (City University of Hong Kong new university campus Dongguan)"]
    # The third turn inherits the first question's words, not the second's rewrite: no nested topics.
    assert queries[2].startswith("What has it contributed for ships? (") and queries[2].count("(") == 1
    assert queries[2].endswith(" new university campus Dongguan)")
    assert is_follow_up("When did it open?") and is_follow_up("And the value?") and is_follow_up("Where?")
    assert not is_follow_up("How many representatives attended the conference?")


def test_a_follow_up_is_not_answered_with_what_it_refers_to(shipped_index: Settings, embedder) -> None:
    """"its product series" means OPPO's: the answer is the series, from a close sentence, not OPPO again."""
    assistant = Assistant(shipped_index, embedder)
    first = assistant.ask("Which company partnered with Hong Kong Polytechnic University on AI imaging technology?")
    assert first.short_answer == "OPPO"
    history = record_turn([], "Which company partnered with Hong Kong Polytechnic University on AI imaging technology?",
                          first)
    follow_up = assistant.ask("Which of its product series is given as an example of that partnership?", history)
    assert follow_up.query == ("Which of its product series is given as an example of that partnership? (OPPO company "
                               "partnered Hong Kong Polytechnic University AI imaging technology)")
    assert follow_up.short_answer == "Find X8"
    assert follow_up.citations[0].text.startswith("The Find X8 series' AI-powered telephoto algorithm")


def test_history_export_as_markdown_with_citations(tiny_index: Settings, embedder) -> None:
    assistant = Assistant(tiny_index, embedder=embedder)
    first = assistant.ask("How many agreements were signed at the trade conference?")
    history = record_turn([], "How many agreements were signed at the trade conference?", first)
    second = assistant.ask("And what were they worth?", history)
    assert second.query == "And what were they worth? (33 agreements signed trade conference)"
    history = record_turn(history, "And what were they worth?", second)
    assert [t.question for t in history] == ["How many agreements were signed at the trade conference?",
                                             "And what were they worth?"]
    assert history[1].query == second.query and history[1].answer is second

    markdown = conversation_markdown(history)
    c = first.citations[0]
    assert markdown.startswith("# Conversation\n\n**You:** How many agreements were signed at the trade conference?\n\n"
                               f"**Assistant:** {first.text}\n\nSources:\n\n"
                               f"1. `{c.source}` (chars {c.start}–{c.end})\n   > {c.text}\n")
    assert f"**You:** And what were they worth?\n\n*searched for: {second.query}*\n\n**Assistant:** {second.text}" in markdown

    refusal = assistant.ask("What is the capital of France?")
    assert refusal.refused
    assert "\nClosest passages:\n" in conversation_markdown(record_turn([], "What is the capital of France?", refusal))


@pytest.mark.slow
def test_rag_chat_follows_up_starts_over_and_exports(tiny_index: Settings, tmp_path: Path) -> None:
    export = tmp_path / "chat.md"
    script = "\n".join([
        "How many agreements were signed at the trade conference?",
        "And what were they worth?",
        f"/export {export}",
        "/new",
        "And what were they worth?",
        "/quit",
        "How many agreements were signed at the trade conference?",  # never read: /quit ended the chat
    ])
    result = subprocess.run(
        [sys.executable, "-m", "rag.cli", "chat", "--corpus", str(tiny_index.corpus_dir), "--index",
         str(tiny_index.index_dir)],
        input=script, capture_output=True, text=True, timeout=300, cwd=REPO, env=dict(os.environ),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("you> ") == 6 and "new conversation" in result.stderr
    assert result.stdout.count("(searched for: And what were they worth? (33 agreements signed trade conference))") == 1
    assert "saved 2 exchanges to " + str(export) in result.stderr
    text = export.read_text(encoding="utf-8")
    assert text.count("**You:**") == 2 and "`conference.txt`" in text
