"""Follow-up questions: which ones lean on the conversation, and their rewriting into a standalone query.

"When did it open?" after "Tell me about the City University of Hong Kong (Dongguan)" cannot be retrieved
as it is. Without a model, the query inherits the last short answer and the words of the latest question
that stood on its own; with an LLM configured, the model rewrites it (checked, with the rule as fallback).
What counts as leaning on the conversation comes from the language pack (rag/language.py), the same rule
the question analysis (rag/question.py) records.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from rag.language import English, get_language
from rag.schema import Turn

if TYPE_CHECKING:
    from llama_index.core.llms import LLM


def is_follow_up(question: str, language: English | None = None) -> bool:
    """A question that leans on the previous turn: a pronoun, a leading "and/what about", or no subject."""
    return (language or get_language()).leans_on_conversation(question)


def topic_of(text: str, language: English | None = None) -> str:
    """The words a question is about, in order: what a follow-up inherits from its predecessor."""
    return " ".join((language or get_language()).topic_words(text))


def condense(question: str, history: Sequence[Turn] | None) -> str:
    """Rewrite a follow-up into a standalone query without a model: append the conversation's topic.

    "When did it open?" after "Tell me about the City University of Hong Kong (Dongguan)" becomes
    "When did it open? (City University Hong Kong (Dongguan))". Retrieval then finds the right passage;
    the answer type still comes from the question itself.
    """
    question = question.strip()
    if not is_follow_up(question):
        return question
    topic = conversation_topic(history)
    return f"{question} ({topic})" if topic else question


def conversation_topic(history: Sequence[Turn] | None) -> str:
    """The last answer's short answer ("OPPO": what "its" most likely means) and the words of the latest
    question that stood on its own (follow-ups inherit it, so topics do not nest)."""
    if not history:
        return ""
    anchor = next((t for t in reversed(history) if not is_follow_up(t.question)), history[-1])
    short = history[-1].answer.short_answer or ""
    return " ".join(part for part in (short, topic_of(anchor.question)) if part)


def last_query(history: Sequence[Turn] | None) -> str | None:
    """The standalone query of the latest turn (its rewritten form when known)."""
    return history[-1].query if history else None


# The LLM's rewrite of a follow-up; a module constant so callers may override it.
CONDENSE_PROMPT = (
    "Rewrite the follow-up question as one standalone question that names what it refers to, using the "
    "conversation below. Reply with the rewritten question only; do not answer it.\n\n"
    "Conversation:\n{conversation}\n\nFollow-up question: {question}\nStandalone question:"
)


def llm_condense(llm: LLM, question: str, history: Sequence[Turn], prompt: str = CONDENSE_PROMPT) -> str | None:
    """The LLM's standalone form of a follow-up, or None when what it wrote is not a usable rewrite: not a
    question (the model answered instead), far too long, still a follow-up by `is_follow_up` (an echo), or
    without the follow-up's own words."""
    from llama_index.core.llms import ChatMessage

    lines = []
    for turn in list(history)[-2:]:
        for speaker, said in (("User", turn.question), ("Assistant", turn.answer.text)):
            lines.append(f"{speaker}: {' '.join(said.split())[:300]}")
    response = llm.chat([ChatMessage(role="user", content=prompt.format(conversation="\n".join(lines),
                                                                         question=question))])
    text = (response.message.content or "").strip()
    text = re.sub(r"^(standalone question|question)\s*:\s*", "", text.splitlines()[0] if text else "", flags=re.I)
    text = text.strip().strip('"\'“”').strip()
    language = get_language()
    own = set(language.content_words(question))
    if not text.endswith("?") or len(text) > 2 * len(question) + 200 or is_follow_up(text):
        return None  # not a question (an answer), rambling, or still leaning on the conversation (an echo)
    if own and len(own & set(language.content_words(text))) < len(own) / 2:
        return None
    return text
