"""The language pack: every rule that depends on the language of the documents and questions.

Word splitting, stemming, stopwords and question words, sentence splitting, what a question asks for (its
answer type, focus, counted noun, names, period), whether it leans on the previous turn, and the patterns
that find numbers, dates, durations and names in a sentence live here and nowhere else. Another language,
or a domain with its own units, is one new pack (a subclass replacing what differs), not edits across the
answerer. `English` is the only pack; `get_language(code)` picks one by the `language` setting.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable

import Stemmer

_NUMBER_WORDS = r"(?:one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|a few|several|a couple of)"
_MONTH = (
    r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|Sep(?:t(?:ember)?)?|"
    r"Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)"
)
_WEEKDAY = r"(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday)"
_TIME_UNIT = r"(?:seconds?|minutes?|hours?|days?|weeks?|months?|years?|decades?)"
_MEASURES = (r"(?:area|population|size|gdp|revenue|revenues|turnover|price|cost|budget|height|length|weight|"
             r"capacity|value|salary|rate|percentage|share|volume|output|worth|sum|amount|number|count|total)")

Candidate = tuple[int, int, str]  # start, end, text of an answer candidate in a sentence


@functools.lru_cache(maxsize=1)
def _punkt() -> Callable[[str], list[str]]:
    from rag.nlp_data import sentence_splitter  # llama-index's punkt data, without importing llama-index

    return sentence_splitter()


class English:
    """The English pack. A pack for another language subclasses it and replaces what differs."""

    code = "en"
    stemmer_name = "english"

    # Words that say what kind of answer is wanted, or connect, rather than what a question is about.
    question_words = frozenset("""
        what which who whom whose when where why how many much long tell me name named kind type according article
        document documents text say says said mention mentioned give describe explain list also ago around
        approximately roughly exactly total number amount date year time day month would could get got us one ones
        thing things
        beyond besides apart except within among amongst per via toward towards upon onto across along behind
        despite regarding concerning including like unlike whether either neither yet still already ever even else
        big large high old far thanks
        """.split())  # the second paragraph: prepositions and connectives nltk's list lacks
    word = re.compile(r"(?u)\b\w\w+\b")

    # A question leaning on the previous turn: a pronoun or a leading "and/what about" (or no subject).
    dependent = re.compile(
        r"\b(it|its|it's|they|them|their|theirs|this|that|these|those|he|him|his|she|her|there|then|the same|such)\b",
        re.IGNORECASE)
    ellipsis_start = re.compile(r"^\s*(and|also|what about|how about|what of|and what about|same for|but)\b",
                                re.IGNORECASE)

    # Answer types, from the wording of the question; the first rule that matches decides.
    type_rules: tuple[tuple[str, re.Pattern], ...] = (
        ("duration", re.compile(r"\bhow long\b|\bhow much time\b|\bhow many (hours|days|minutes|weeks|months|years)\b")),
        ("date", re.compile(r"^\W*(and |so |but )?when\b|\b(what|which|in what) (year|date|month|day)\b|\bsince when\b")),
        ("number", re.compile(rf"\bhow (many|much|big|large|high|old|far)\b|\b(what|which) (is|was|are|were) the "
                              rf"(\w+ )?{_MEASURES}\b|\bwhat {_MEASURES}\b|\b{_MEASURES} of\b")),
        ("person", re.compile(r"^\s*(who|whom|whose)\b")),
        ("name", re.compile(r"^\s*(which|where)\b|\b(which|where)\b|\bwhat is the name\b")),
    )
    # The word naming what a typed question asks about: "population" in "What is the population of X?".
    focus_patterns = (
        re.compile(r"\b(?:what|which|who) (?:is|was|are|were) the ([a-z][\w-]*) (?:of|in|at|for|behind)\b"),
        re.compile(r"^\s*who (?!is\b|was\b|are\b|were\b)([a-z]{3,})\b"),  # who organised X
    )
    generic_measures = frozenset("size value amount number total name sum figure level scale".split())
    counted_opener = re.compile(r"\bhow many\s+(.+)")
    # A question limited to a year: "last year", "this year", "in 2019" (not "in what year", which asks for
    # one, nor "over the years").
    period = re.compile(r"\b(?:last|this|next|past|previous|current)\s+(?:fiscal\s+|calendar\s+)?year\b"
                        r"|\b(?:in|during|for|by|of)\s+((?:1[5-9]|20)\d{2})\b", re.IGNORECASE)
    year_level = re.compile(r"\b(?:1[5-9]|20)\d{2}s?\b|\b(?:last|this|next|past|previous|current|each|every|per|a)\s+"
                            r"(?:fiscal\s+|calendar\s+)?year\b|\bannual(?:ly)?\b|\byearly\b", re.IGNORECASE)

    # Answer candidates in a sentence, by kind.
    patterns: dict[str, re.Pattern] = {
        "date": re.compile(
            rf"\b(?:{_MONTH}\s+\d{{1,2}}(?:st|nd|rd|th)?(?:,?\s+\d{{4}})?|\d{{1,2}}\s+{_MONTH}(?:\s+\d{{4}})?"
            rf"|{_MONTH}\s+\d{{4}}|(?:1[5-9]|20)\d{{2}}s?"
            rf"|(?:\d+|{_NUMBER_WORDS})\s+{_TIME_UNIT}\s+ago)\b"
        ),
        "duration": re.compile(rf"\b(?:\d+(?:\.\d+)?|{_NUMBER_WORDS})[\s-]{_TIME_UNIT}\b"),
        "number": re.compile(
            r"(?<![\w.+$])(?:US\$|HK\$|\$|RMB ?|¥|€|£)?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?"
            r"(?:\s?%|\s?percent|(?:[- ](?:thousand|million|billion|trillion))?(?:[- ](?:yuan|RMB|dollars|USD|HKD|euros))?)"
            r"(?![\w+])"
        ),
        "name": re.compile(
            r"\b[A-Z][\w&'’.+-]*(?:\s+(?:(?:of|and|for|the|de|&)\s+)*[A-Z][\w&'’.+-]*)*(?:\s+\([A-Z][\w\s]*\))?"
        ),
    }
    # Which candidate kind answers which answer type.
    candidate_kind = {"person": "name", "name": "name", "number": "number", "date": "date", "duration": "duration"}
    # Capitalised words that are not names, and openers stripped off a name candidate.
    not_names = re.compile(rf"^(?:{_MONTH}|{_WEEKDAY})$")
    leading_filler = re.compile(
        r"^(?:The|A|An|This|That|These|Those|Its|Their|In|On|At|By|For|With|From|Since|Similarly|Moreover|Meanwhile|"
        r"However|Also|And|But|Now|Today|Thanks)\s+"
    )

    def __init__(self) -> None:
        from bm25s.stopwords import STOPWORDS_EN

        from rag.nlp_data import english_stopwords

        self._stemmer = Stemmer.Stemmer(self.stemmer_name)
        # nltk's English list (bundled with llama-index); bm25s' own list is too short for judging questions.
        self.stopwords = frozenset(english_stopwords()) | frozenset(STOPWORDS_EN) | self.question_words

    # --- words ---------------------------------------------------------------------------------------
    def words(self, text: str) -> list[str]:
        """Lower-cased words of two letters or more."""
        return self.word.findall(text.lower())

    def content_words(self, text: str) -> list[str]:
        """Lower-cased words that carry meaning (not stopwords or question words)."""
        return [w for w in self.words(text) if w not in self.stopwords]

    def corpus_words(self, text: str) -> list[str]:
        """The alphabetic words of `text`, stopwords included: what the index embeds once as its vocabulary."""
        return [w for w in self.words(text) if w.isalpha()]

    def stem(self, words: list[str]) -> list[str]:
        return self._stemmer.stemWords(words)

    # --- sentences -----------------------------------------------------------------------------------
    def split_sentences(self, text: str) -> list[tuple[int, int]]:
        """Sentence spans (start, end) in `text`: blocks first, then punkt inside each block.

        A line break ends a block after terminal punctuation or after a short line (a heading such as
        "Perfect partners"); otherwise it is a PDF's layout wrap inside a sentence and is read as a space.
        punkt keeps "3.28 million" and "U.S." whole, which splitting on "." does not.
        """
        splitter = _punkt()
        spans: list[tuple[int, int]] = []
        for block_start, block_end in self._blocks(text):
            block = text[block_start:block_end].replace("\n", " ")  # same length: offsets stay valid
            cursor = 0
            for piece in splitter(block):
                piece = piece.strip()
                start = block.find(piece, cursor) if piece else -1
                if start < 0:
                    continue
                spans.append((block_start + start, block_start + start + len(piece)))
                cursor = start + len(piece)
        return spans

    @staticmethod
    def _blocks(text: str) -> list[tuple[int, int]]:
        blocks: list[tuple[int, int]] = []
        start = 0
        for line in re.finditer(r"[^\n]*\n", text):
            content = line.group().strip()
            if not content or content[-1] in ".!?:;\"”" or len(content) < 50:
                if text[start : line.end()].strip():
                    blocks.append((start, line.end() - 1))
                start = line.end()
        if text[start:].strip():
            blocks.append((start, len(text)))
        return blocks

    # --- questions -----------------------------------------------------------------------------------
    def answer_type(self, question: str) -> str | None:
        """What a question wants: number, date, duration, person, name, or None (any sentence answers)."""
        lowered = question.lower()
        for kind, rule in self.type_rules:
            if rule.search(lowered):
                return kind
        return None

    def focus_words(self, question: str) -> list[str]:
        """The word naming what a typed question asks about, when the wording shows it."""
        lowered = question.lower()
        for pattern in self.focus_patterns:
            match = pattern.search(lowered)
            if match and match.group(1) not in self.stopwords and match.group(1) not in self.generic_measures:
                return [match.group(1)]
        return []

    def counted_words(self, question: str) -> list[str]:
        """The noun phrase after "how many": what a count in the answer must be a count of."""
        match = self.counted_opener.search(question.lower())
        words: list[str] = []
        for word in self.word.findall(match.group(1)) if match else []:
            if word in self.stopwords:
                break
            words.append(word)
        return words[:4]

    def names_in(self, question: str) -> list[str]:
        """Capitalised words not opening a sentence ("OPPO", "Hong", "Kong"), lower-cased: names a passage
        must mention to be about the same thing. Paraphrase does not reach names, so they are matched
        literally. A name in parentheses only spells out its neighbour ("DAG (Directed Acyclic Graph)")."""
        words: list[str] = []
        for sentence in re.split(r"(?<=[.?!])\s+", re.sub(r"\([^)]*\)", " ", question)):
            for token in re.findall(r"[A-Za-z][\w'’-]*", sentence)[1:]:
                token = re.sub(r"['’]s$", "", token)
                if token[0].isupper() and token.lower() not in self.stopwords:
                    words += [w for w in self.words(token) if w not in self.stopwords]
        return list(dict.fromkeys(words))

    def period_asked(self, question: str) -> str | None:
        """The year a question is limited to ("2019"), "year" for a relative one ("last year"), or None."""
        match = self.period.search(question)
        if not match:
            return None
        return match.group(1) or "year"

    def in_period(self, period: str, text: str) -> bool:
        """Whether `text` places what it says in a year: the year asked about, or for "last year" any year or
        yearly wording. A figure from a dated event ("On March 17 ...") does not answer for a year."""
        if period != "year":
            return re.search(rf"\b{period}\b", text) is not None
        return self.year_level.search(text) is not None

    def leans_on_conversation(self, question: str) -> bool:
        """A pronoun, a leading "and/what about", or no subject of its own."""
        if self.ellipsis_start.search(question) or self.dependent.search(question):
            return True
        return len(self.content_words(question)) <= 1

    def topic_words(self, text: str) -> list[str]:
        """The words a question is about, in order and as written (names keep their case)."""
        words = re.findall(r"[\w()+-]+", text.replace("'s ", " "))
        return list(dict.fromkeys(w for w in words if w.lower().strip("()") not in self.stopwords))

    # --- answer candidates ---------------------------------------------------------------------------
    def candidates(self, answer_type: str, sentence: str, known: str) -> list[Candidate]:
        """Every span in the sentence that answers `answer_type` and that `known` (the question, or it and
        its query) does not already contain."""
        kind = self.candidate_kind[answer_type]
        known_lower = known.lower()
        spans = [(m.start(), m.end()) for m in self.patterns[kind].finditer(sentence)]
        if kind == "number":
            # A number inside a date ("March 17") or a duration is not a count.
            taken = [(m.start(), m.end()) for k in ("date", "duration") for m in self.patterns[k].finditer(sentence)]
            spans = [s for s in spans if not any(a <= s[0] < b for a, b in taken)]
        found: list[Candidate] = []
        for start, end in spans:
            text = sentence[start:end].strip()
            if kind == "name":
                text = self.clean_name(text)
                if text is None:
                    continue
            if text.lower() in known_lower:
                continue
            found.append((start, end, text))
        return found

    def clean_name(self, text: str) -> str | None:
        """A name candidate without a leading article or connective and a possessive; None when nothing
        name-like is left."""
        text = self.leading_filler.sub("", text)
        text = re.sub(r"['’]s$", "", text)
        if len(text) < 2 or text.lower() in self.stopwords or self.not_names.match(text):
            return None
        return text


@functools.lru_cache(maxsize=4)
def get_language(code: str = "en") -> English:
    """The language pack for a settings code; one instance per process."""
    packs = {"en": English}
    if code not in packs:
        raise ValueError(f"no language pack {code!r}: choose one of {', '.join(sorted(packs))} (setting RAG_LANGUAGE)")
    return packs[code]()
