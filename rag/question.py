"""Question analysis, done once per question: what is asked, about what, and whether it leans on the
conversation. The extractive answerer, the LLM path's checks and the follow-up rewriting read this one
`QuestionAnalysis` instead of re-parsing the question text each.
"""

from __future__ import annotations

from dataclasses import dataclass

from rag.language import English


@dataclass(frozen=True)
class QuestionAnalysis:
    text: str  # the question (or standalone query) as analysed
    answer_type: str | None  # number, money, measure, date, duration, person, name; None: untyped
    open: bool  # why/how/describe...: answered with up to a few sentences
    words: tuple[str, ...]  # content words, in order, once each
    stems: tuple[str, ...]  # their stems, aligned with `words`
    focus: tuple[str, ...]  # the word naming what a typed question asks about ("population"), if the wording shows it
    counted: tuple[str, ...]  # the words after "how many"
    names: tuple[str, ...]  # capitalised words (lower-cased) a passage should mention
    initialisms: tuple[str, ...]  # words in capitals ("nyc"), which a passage may spell out ("New York City")
    period: str | None  # a year the question is limited to, "year" for a relative one, or None
    follows_up: bool  # leans on the previous turn (pronoun, "and ...", no subject of its own)


def analyse(text: str, language: English) -> QuestionAnalysis:
    text = text.strip()
    words = tuple(dict.fromkeys(language.content_words(text)))
    answer_type = language.answer_type(text)
    return QuestionAnalysis(
        text=text,
        answer_type=answer_type,
        open=answer_type is None and language.is_open(text),
        words=words,
        stems=tuple(language.stem(list(words))),
        focus=tuple(language.focus_words(text)),
        counted=tuple(language.counted_words(text)),
        names=tuple(language.names_in(text)),
        initialisms=tuple(language.initialisms(text)),
        period=language.period_asked(text),
        follows_up=language.leans_on_conversation(text),
    )
