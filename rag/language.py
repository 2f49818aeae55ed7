"""The language pack: every rule that depends on the language of the documents and questions.

Word splitting, stemming, stopwords and question words, sentence splitting, what a question asks for (its
answer type, focus, counted noun, names, period), whether it leans on the previous turn, the patterns that find
numbers, dates, durations and names in a sentence, and the facts an LLM's answer must not invent live here and
nowhere else. Another language, or a domain with its own units, is one new pack (a subclass replacing what
differs), not edits across the answerer. `English` is the only pack; `get_language(code)` picks one by the
`language` setting.
"""

from __future__ import annotations

import functools
import logging
import re
import unicodedata
from collections.abc import Callable

import Stemmer

_SMALL = ("zero|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|"
          "sixteen|seventeen|eighteen|nineteen")  # "one" alone is mostly a pronoun ("one of the first")
_TENS = "twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety"
_SCALE_WORDS = "hundred|thousand|million|billion|trillion"
# "thirty-three", "twenty one", "a hundred", "two million", "several", "a dozen"
_NUMBER_WORD = (rf"(?:(?:{_TENS})(?:[\s-](?:{_SMALL}|one))?|{_SMALL}|a dozen|dozens|a few|several|a couple of|a hundred"
                rf"|a thousand|one(?=[\s-](?:{_SCALE_WORDS})))(?:[\s-](?:{_SCALE_WORDS}))*")
_DIGITS = r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?"
_SCALE = rf"(?:[\s-]?(?:{_SCALE_WORDS})|\s?(?:bn|mn|tn|m|k|b)\b)"  # "2 billion", "12bn", "$3m"
_CURRENCY_SYMBOL = r"(?:[A-Z]{1,3}\$|[$€£¥₹₩₽₪฿])"  # $, US$, HK$, R$, €, ...
_CURRENCY_CODE = r"(?:[A-Z]{3})"  # any ISO 4217 code: USD, EUR, RMB, ...
_CURRENCY_WORD = (r"(?:dollars?|euros?|pounds? sterling|pounds?|yen|yuan|renminbi|rupees?|francs?|pesos?|won|"
                  r"rubles?|roubles?|marks?|crowns?|kronor|krona|lira|dinars?|rand|reais|real|shillings?|cents?)")
_MONTH = (r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|Sep(?:t(?:ember)?)?|"
          r"Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)")
_WEEKDAY = r"(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday)"
_TIME_UNIT = r"(?:seconds?|minutes?|hours?|days?|weeks?|fortnights?|months?|years?|decades?|centuries|century)"
_LENGTH = (r"(?:millimet(?:re|er)s?|centimet(?:re|er)s?|kilomet(?:re|er)s?|met(?:re|er)s?|mm|cm|km|m|miles?|feet|"
           r"foot|ft|inch(?:es)?|yards?|yd|nautical miles?)")
_AREA = rf"(?:square {_LENGTH}|sq\.? ?(?:km|mi|m|ft)|(?:km|m|mi)²|(?:km|m)2|hectares?|ha|acres?)"
_MASS = r"(?:milligrams?|grams?|kilograms?|tonnes?|tons?|pounds?|ounces?|mg|kg|lbs?|oz)"
_VOLUME = r"(?:litres?|liters?|millilit(?:re|er)s?|gallons?|barrels?|cubic (?:met(?:re|er)s?|feet)|ml|m³|m3)"
_OTHER_UNIT = (r"(?:°\s?[CF]|degrees?(?: (?:Celsius|Fahrenheit))?|kWh|MWh|GWh|TWh|kW|MW|GW|watts?|volts?|hertz|Hz|"
               r"GHz|MHz|mph|km/h|knots?|calories?|bytes?|KB|MB|GB|TB|bits?|pixels?)")
_UNIT = rf"(?:{_AREA}|{_LENGTH}|{_MASS}|{_VOLUME}|{_OTHER_UNIT})"
_QUANTITY = rf"(?:{_DIGITS}|{_NUMBER_WORD})"
_MEASURES = (r"(?:area|population|size|gdp|revenue|revenues|income|profit|profits|turnover|price|cost|budget|height|"
             r"length|width|depth|distance|weight|mass|capacity|value|salary|wage|rate|percentage|share|volume|output|"
             r"worth|sum|amount|number|count|total|temperature|speed|age|score|attendance|debt|funding|sales|"
             r"spending|tax|fee|fees|ratio)")
_MONEY_NOUNS = (r"\b(?:money|cost|costs|price|prices|value|worth|revenue|revenues|income|profit|profits|budget|"
                r"salary|wage|spending|spent|pay|paid|earn|earned|earnings|sales|funding|invest(?:ed|ment)?|debt|tax|"
                r"fee|fees|fine|sum|dollars?|euros?)\b")
_OPENER = r"^\W*(?:and|so|but|also|then|ok|okay|well)\b[\s,]*"  # "And who designed it?" asks what "Who ..." asks
_PREPOSITION = r"(?:in|on|at|to|by|with|for|from|of|into|through|during|since|until)"

# Texts whose stems a pack remembers: the sentences and chunks of many questions' evidence. Measured: 2,300
# SQuAD questions left 7,547 texts remembered and the process 18 MB larger, all caches included (~50 MB when full).
TEXT_CACHE_SIZE = 20_000
Candidate = tuple[int, int, str]  # start, end, text of an answer candidate in a sentence


@functools.lru_cache(maxsize=1)
def _punkt() -> Callable[[str], list[str]]:
    from rag.nlp_data import sentence_splitter  # llama-index's punkt data, without importing llama-index

    return sentence_splitter()


def fold(text: str) -> str:
    """Lower case without accents or compatibility forms ("Beyoncé" -> "beyonce", "ﬁnal" -> "final"): the form
    in which words are compared, indexed for BM25 and looked up, never what is shown. People type names
    without their accents, and a PDF's text may carry ligatures the question does not."""
    if text.isascii():
        return text.lower()
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return "".join(char for char in decomposed if not unicodedata.combining(char))


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

    # Answer types, from the wording of the question (a leading "and/so/but" dropped); the first rule that
    # matches decides. "number" becomes "money" or "measure" when the question speaks of money or a unit.
    opener = re.compile(_OPENER, re.IGNORECASE)
    type_rules: tuple[tuple[str, re.Pattern], ...] = (
        ("duration", re.compile(r"\bhow long\b(?! (?:is|are|was|were) (?:the|a|an|it|its|their)\b)|\bhow much time\b|"
                                r"\bhow many (?:seconds|minutes|hours|days|weeks|months|years|decades)\b|\bfor how long\b")),
        ("year", re.compile(r"\b(?:what|which) year\b")),  # a year, not any date: "3 December" does not answer
        ("date", re.compile(rf"^(?:{_PREPOSITION} )?when\b|^since when\b|\b(?:what|which|in what) (?:year|date|month|day|"
                            r"decade|century)\b")),
        # Before "number": "Who showed a great amount of respect to X?" asks for a person, not an amount.
        ("person", re.compile(rf"^(?:{_PREPOSITION} )?(?:who|whom|whose)\b")),
        ("number", re.compile(rf"\bhow (?:many|much|big|large|high|old|far|tall|wide|deep|heavy|long)\b|\bwhat percent(?:age)?\b|"
                              rf"\b(?:what|which) (?:is|was|are|were) the (?:\w+ )?{_MEASURES}\b|\bwhat {_MEASURES}\b|"
                              rf"\b{_MEASURES} of\b|\w['’]s {_MEASURES}\b")),
        ("name", re.compile(rf"^(?:{_PREPOSITION} )?(?:which|where)\b|\bwhat (?:is|was|are|were) (?:the )?(?:\w+ )?name\b|"
                            r"\bwhat (?:is|was|are|were) \w+(?: \w+)? called\b")),
    )
    # "Why/how/describe/explain/what are the reasons ...": answered with a few sentences, not one fact.
    open_question = re.compile(r"^(?:why|how (?!many|much|long|old|far|big|large|tall|high|wide|deep|heavy)|"
                               r"describe|explain|discuss|summari[sz]e|tell me about|what (?:are|were) the "
                               r"(?:\w+ )?(?:reasons?|causes?|effects?|benefits?|advantages?|disadvantages?|"
                               r"challenges?|features?|differences?|steps?|ways?|roles?|impacts?|consequences?)\b|"
                               r"in what ways?\b|what (?:is|was) the (?:role|purpose|significance|impact|effect) of\b)")
    measure_question = re.compile(r"\bhow (?:tall|high|wide|deep|far|heavy|long (?:is|are|was|were))\b|"
                                  r"\b(?:area|height|length|width|depth|distance|weight|mass|capacity|volume|"
                                  r"temperature|speed)\b")
    money_question = re.compile(_MONEY_NOUNS)
    # The word naming what a typed question asks about: "population" in "What is the population of X?".
    focus_patterns = (
        re.compile(r"\b(?:what|which|who) (?:is|was|are|were) the ([a-z][\w-]*) (?:of|in|at|for|behind|between)\b"),
        re.compile(rf"\b\w+['’]s ({_MEASURES})\b"),  # X's population
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
            rf"\b(?:\d{{4}}-\d{{2}}-\d{{2}}|\d{{1,2}}/\d{{1,2}}/\d{{2,4}}"
            rf"|(?:{_WEEKDAY},?\s+)?{_MONTH}\.?\s+\d{{1,2}}(?:st|nd|rd|th)?(?:,?\s+\d{{4}})?"
            rf"|\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+)?{_MONTH}(?:,?\s+\d{{4}})?"
            rf"|(?:early |mid-?|late )?{_MONTH},?\s+\d{{4}}|(?:early |mid-?|late )?(?:1[0-9]|20)\d{{2}}s?"
            rf"|\d{{1,2}}(?:st|nd|rd|th) century|(?:{_QUANTITY})\s+{_TIME_UNIT}\s+ago)\b"),
        "year": re.compile(r"(?<![\w$€£¥.,])(?:1[0-9]|20)\d{2}(?!\w|[.,]\d)"),  # not in "$1500", "2,019", "2019.5"
        "duration": re.compile(rf"\b(?:{_QUANTITY})[\s-]{_TIME_UNIT}\b"),
        "measure": re.compile(rf"(?<![\w.])(?:{_QUANTITY}){_SCALE}?[\s-]?{_UNIT}(?![\w])"),
        "money": re.compile(
            rf"(?:{_CURRENCY_SYMBOL}\s?|\b{_CURRENCY_CODE}\s?)(?:{_DIGITS}){_SCALE}?(?![\w])"
            rf"|(?<![\w.]){_QUANTITY}{_SCALE}?[\s-]?(?:{_CURRENCY_CODE}\b|{_CURRENCY_WORD}\b)"),
        "number": re.compile(
            rf"(?:{_CURRENCY_SYMBOL}\s?)?(?<![\w.])(?:{_DIGITS}|\b(?i:{_NUMBER_WORD})\b(?!-\w))(?:\s?%|\s?per ?cent|{_SCALE})?"
            rf"(?:[\s-]?(?:{_CURRENCY_CODE}\b|{_CURRENCY_WORD}\b))?(?![\w])"),
        "name": re.compile(
            r"\b[A-Z][\w&'’+-]*(?:\.[A-Z][\w&'’+-]*)*(?:\s+(?:(?:of|and|for|the|de|von|van|da|del|la|le|&)\s+)*"
            r"[A-Z][\w&'’+-]*(?:\.[A-Z][\w&'’+-]*)*)*(?:\s+\([A-Z][\w\s]*\))?"),
    }
    # Which candidate kinds answer which answer type, in passes: an amount with a currency (a quantity with a
    # unit) from any supporting sentence before a bare number.
    candidate_passes: dict[str, tuple[str, ...]] = {
        "person": ("name",), "name": ("name",), "number": ("number",), "money": ("money", "number"),
        "measure": ("measure", "number"), "date": ("date",), "year": ("year",), "duration": ("duration",),
    }
    # Answer types as a reader says them ("none of them gives the amount asked for").
    kind_words = {"number": "number", "money": "amount", "measure": "measure", "date": "date", "year": "year",
                  "duration": "duration", "person": "name", "name": "name"}
    # Capitalised words that are not names, and openers stripped off a name candidate.
    not_names = re.compile(rf"^(?:{_MONTH}|{_WEEKDAY}|I)$")
    leading_filler = re.compile(
        r"^(?:The|A|An|This|That|These|Those|Its|Their|His|Her|In|On|At|By|For|With|From|Since|Similarly|Moreover|"
        r"Meanwhile|However|Also|And|But|Now|Today|Thanks|After|Before|During|When|While|If|As|Although|Though|"
        r"Because|Under|Over|According|Despite|Following|Unlike|Like)(?:,?\s+|,?$)")

    # --- what an LLM's answer must not invent, and how it says it cannot answer (rag/generate.py) --------
    llm_refusal = re.compile(
        r"\bnot (?:found |mentioned |stated |given )?in the (?:documents?|passages?|text)\b"
        r"|\b(?:documents?|passages?) (?:do not|don't|does not|doesn't) (?:say|contain|mention|answer)\b"
        r"|\b(?:I|we) (?:cannot|can't|could not|couldn't|do not|don't) (?:find|know|answer)\b",
        re.IGNORECASE,
    )
    # An instruction aimed at the assistant, found inside a document: such a sentence supports no claim.
    instruction = re.compile(
        r"\b(?:ignore|disregard|forget|override)\b[^.\n]{0,60}?\b(?:instructions?|prompts?|rules|guidelines)\b"
        r"|\byou are now\b|\bsystem prompt\b",
        re.IGNORECASE,
    )
    # A number as a claim states it: digits with an optional decimal part, ordinal suffix and scale word.
    fact_number = re.compile(
        r"(?<![\w.])(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?(?:st|nd|rd|th)?(?:[\s-]+(thousand|million|billion|trillion))?",
        re.IGNORECASE,
    )
    fact_word = re.compile(r"\w+")
    # Words capitalised because they open a sentence, not because they are names.
    capitalised_common = frozenset({
        "the", "a", "an", "it", "its", "this", "that", "these", "those", "they", "their", "there", "he", "she", "his",
        "her", "we", "our", "you", "your", "in", "on", "at", "by", "for", "with", "from", "to", "of", "and", "but",
        "or", "as", "after", "before", "during", "since", "according", "also", "both", "each", "some", "many", "most",
        "all", "yes", "no", "not", "however", "moreover", "meanwhile", "furthermore", "additionally", "overall",
        "then", "when", "where", "which", "who", "what", "how", "why", "while", "if", "so", "thus", "therefore", "i",
    })

    def __init__(self) -> None:
        from bm25s.stopwords import STOPWORDS_EN

        logging.getLogger("bm25s").setLevel(logging.WARNING)  # bm25s sets DEBUG on import

        from rag.nlp_data import english_stopwords

        self._stemmer = Stemmer.Stemmer(self.stemmer_name)
        # nltk's English list (bundled with llama-index); bm25s' own list is too short for judging questions.
        self.stopwords = frozenset(english_stopwords()) | frozenset(STOPWORDS_EN) | self.question_words
        self._name_openers = self.stopwords | self.name_joiners  # words a sentence-opening name candidate loses
        # A corpus sentence is read again by every question that retrieves it, and splitting, folding and
        # stemming its words was most of an answer's Python time (held under the GIL, so concurrent questions
        # queued on it): each text's stems and spelled-out initials are worked out once per pack.
        self._stems_of = functools.lru_cache(maxsize=TEXT_CACHE_SIZE)(self._compute_stems)
        self._initials_of = functools.lru_cache(maxsize=TEXT_CACHE_SIZE)(self._compute_initials)

    # --- words ---------------------------------------------------------------------------------------
    def words(self, text: str) -> list[str]:
        """Words of two letters or more, folded (see `fold`)."""
        return self.word.findall(fold(text))

    def content_words(self, text: str) -> list[str]:
        """Lower-cased words that carry meaning (not stopwords or question words)."""
        return [w for w in self.words(text) if w not in self.stopwords]

    def corpus_words(self, text: str) -> list[str]:
        """The alphabetic words of `text`, stopwords included: what the index embeds once as its vocabulary."""
        return [w for w in self.words(text) if w.isalpha()]

    def word_stems(self, text: str) -> frozenset[str]:
        """The stems of every word of `text` (memoised)."""
        return self._stems_of(text, False)

    def content_stems(self, text: str) -> frozenset[str]:
        """The stems of the content words of `text` (memoised)."""
        return self._stems_of(text, True)

    def _compute_stems(self, text: str, content_only: bool) -> frozenset[str]:
        return frozenset(self.stem(self.content_words(text) if content_only else self.words(text)))

    bm25_stopwords = "en"  # bm25s's stopword list for keyword search (shorter than `stopwords`, as it always was)

    def bm25_tokens(self, texts: list[str], return_ids: bool = False):
        """The one tokenizer for BM25 (chunks when a segment is written, queries when searching): folded words
        (see `fold`: "Beyonce" finds "Beyoncé"), bm25s's stopwords dropped, stemmed. With `return_ids`,
        bm25s's (ids, vocab) form of the same tokens, for building postings."""
        import bm25s

        return bm25s.tokenize([fold(text) for text in texts], stopwords=self.bm25_stopwords, stemmer=self._stemmer,
                              return_ids=return_ids, show_progress=False)

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
    def strip_opener(self, question: str) -> str:
        """"And who designed it?" -> "who designed it?": a leading conjunction does not change what is asked."""
        return self.opener.sub("", question.strip())

    def answer_type(self, question: str) -> str | None:
        """What a question wants: number, money, measure, year, date, duration, person, name, or None (any
        supporting sentence answers; so for an open question, whose answer is an explanation: "Why did the
        amount of X change?" asks for no number)."""
        lowered = self.strip_opener(question).lower()
        if self.open_question.search(lowered):
            return None
        for kind, rule in self.type_rules:
            if rule.search(lowered):
                if kind == "number" and "how many" not in lowered:  # a count is a count, whatever it counts
                    if self.measure_question.search(lowered):
                        return "measure"
                    if self.money_question.search(lowered):
                        return "money"
                return kind
        return None

    def is_open(self, question: str) -> bool:
        """Whether the question asks for an explanation or a description rather than one fact."""
        return self.open_question.search(self.strip_opener(question).lower()) is not None

    def focus_words(self, question: str) -> list[str]:
        """The word naming what a typed question asks about, when the wording shows it."""
        lowered = self.strip_opener(question).lower()
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
        literally. A name in parentheses only spells out its neighbour ("DAG (Directed Acyclic Graph)"), and
        in "Kong-invested" only the capitalised part is a name."""
        words: list[str] = []
        for sentence in re.split(r"(?<=[.?!])\s+", re.sub(r"\([^)]*\)", " ", question)):
            for token in re.findall(r"[^\W\d_][\w'’-]*", sentence)[1:]:
                token = re.sub(r"['’]s$", "", token)
                for part in token.split("-"):
                    if part[:1].isupper() and part.lower() not in self.stopwords:
                        words += [w for w in self.words(part) if w not in self.stopwords]
        return list(dict.fromkeys(words))

    initialism = re.compile(r"\b[A-Z]{2,6}s?\b")  # "NYC", "UN", "CPUs"
    name_joiners = frozenset({"of", "for", "de", "du", "la", "von", "van"})

    def initialisms(self, question: str) -> list[str]:
        """Words written in capitals ("NYC", "UN"), folded: a passage may spell them out ("New York City").
        One the question spells out itself ("DAG (Directed Acyclic Graph)") is left out: its words are asked."""
        found = (fold(m.group().removesuffix("s") if m.group()[:-1].isupper() else m.group())
                 for m in self.initialism.finditer(question))
        spelled = self.initials_spelled(question)
        return list(dict.fromkeys(word for word in found if word not in self.stopwords and word not in spelled))

    def initials_spelled(self, text: str) -> frozenset[str]:
        """The initials of every run of two or more capitalised words in `text`, and of each part of such a run
        ("New York City" -> nyc, ny, yc; "United States of America" -> usa, us, sa): what an initialism in a
        question may stand for here. A lower-case joiner between two capitalised words ("of") does not end a
        run; punctuation, other words and capitalised stopwords ("The") do. Memoised."""
        return self._initials_of(text)

    def _compute_initials(self, text: str) -> frozenset[str]:
        spelled: set[str] = set()
        run: list[str] = []
        tokens = re.findall(r"[^\W\d_][\w'’-]*|[^\w\s]", text) + [""]
        for index, token in enumerate(tokens):
            if token[:1].isupper() and fold(token) not in self.stopwords:
                run.append(fold(token[0]))
                continue
            if run and token in self.name_joiners and tokens[index + 1][:1].isupper():
                continue
            for start in range(len(run)):
                for end in range(start + 2, min(len(run), start + 6) + 1):
                    spelled.add("".join(run[start:end]))
            run = []
        return frozenset(spelled)

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
    def candidates(self, kind: str, sentence: str, known: str) -> list[Candidate]:
        """Every span of one candidate kind (see `candidate_passes`) in the sentence that `known` (the question,
        or it and its query) does not already contain."""
        known_folded = fold(known)
        found: list[Candidate] = []
        for start, end in self.spans(kind, sentence):
            text = sentence[start:end].strip()
            if kind == "name":
                text = self.clean_name(text, opens_sentence=not sentence[:start].strip(" \t\n\"'“‘("))
                if text is None:
                    continue
            if fold(text) in known_folded:
                continue
            found.append((start, end, text))
        return found

    def spans(self, kind: str, sentence: str) -> list[tuple[int, int]]:
        """Spans of one candidate kind in a sentence. A number inside a date or a duration is read as that,
        not as a count ("March 17", "15 hours"); a measure is not a duration or an amount ("$3m")."""
        found = [(m.start(), m.end()) for m in self.patterns[kind].finditer(sentence)]
        inside = {"number": ("date", "duration"), "measure": ("duration", "money")}.get(kind, ())
        taken = [(m.start(), m.end()) for k in inside for m in self.patterns[k].finditer(sentence)]
        return [s for s in found if not any(a <= s[0] < b for a, b in taken)]

    # Verbs that link a counted noun to its number after it: "the number of agreements reached 33".
    count_links = frozenset("was were is are stood reached totalled totaled numbered came rose fell grew".split())

    def counted_nearby(self, sentence: str, number: Candidate) -> list[str]:
        """The content words that say what a number counts: the first four after it ("33 agreements"), and
        the noun before it when only linking words stand between ("the number of agreements was 33")."""
        start, end, _ = number
        words = self.content_words(sentence[end:])[:4]
        before = self.words(sentence[:start])
        for _ in range(3):
            if before and (before[-1] in self.count_links or before[-1] in self.stopwords):
                before.pop()
        if before and before[-1].isalpha() and before[-1] not in self.stopwords:
            words.append(before[-1])
        return words

    def clean_name(self, text: str, opens_sentence: bool = False) -> str | None:
        """A name candidate without a leading article or connective, a possessive or a final full stop; None
        when nothing name-like is left. A sentence's first word is capitalised whatever it is, so there
        leading stopwords go too ("Some of Chopin's pieces" names Chopin)."""
        text = self.leading_filler.sub("", text.strip())
        words = text.split()
        while opens_sentence and len(words) > 1 and fold(words[0]) in self._name_openers:
            words = words[1:]
        text = re.sub(r"['’]s$", "", " ".join(words)).rstrip(".")
        if len(text) < 2 or text.lower() in self.stopwords or self.not_names.match(text):
            return None
        return text

    def facts(self, text: str) -> set[str]:
        """Numbers with their scale ("18.47 billion", "33"; "1,200" -> "1200") and capitalised words (names,
        months), lower-cased: what a generated sentence must not invent."""
        found: set[str] = set()
        for match in self.fact_number.finditer(text):
            number = match.group(1).replace(",", "") + (match.group(2) or "")
            found.add(number)
            if match.group(3):
                found.add(f"{number} {match.group(3).lower()}")
        for word in self.fact_word.findall(text):
            if word[0].isupper() and len(word) > 1 and word.lower() not in self.capitalised_common:
                found.add(word.lower())
        return found


@functools.lru_cache(maxsize=4)
def get_language(code: str = "en") -> English:
    """The language pack for a settings code; one instance per process."""
    packs = {"en": English}
    if code not in packs:
        raise ValueError(f"no language pack {code!r}: choose one of {', '.join(sorted(packs))} (setting RAG_LANGUAGE)")
    return packs[code]()
