"""Personal names for patient matching: folding, nicknames, Soundex and name comparison.

Pure functions over strings. `matching` turns the outcomes named here into evidence weights.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final

from rapidfuzz.distance import OSA, JaroWinkler, Levenshtein

# Letters NFKD does not decompose into a base letter plus a combining mark.
_SPECIAL_LETTERS: Final = str.maketrans(
    {"ß": "ss", "æ": "ae", "Æ": "ae", "ø": "o", "Ø": "o", "đ": "d", "Đ": "d", "ł": "l", "Ł": "l", "œ": "oe"}
)


@lru_cache(maxsize=65536)
def fold(text: str) -> str:
    """Lower case, diacritics removed, every run of non-letters a single space ("Núñez-O'Neil"
    -> "nunez o neil"). Cached: the same names arrive again and again."""
    decomposed = unicodedata.normalize("NFKD", text.translate(_SPECIAL_LETTERS))
    letters = "".join(
        c if "a" <= c <= "z" else " " for c in decomposed.lower() if not unicodedata.combining(c)
    )
    return " ".join(letters.split())


def family_key(family: str) -> str:
    """A family name as compared: folded, its parts joined ("Garcia-Lopez", "GARCIA LOPEZ" and
    "García López" all give "garcialopez"; "O'Brien" gives "obrien")."""
    return fold(family).replace(" ", "")


def family_parts(family: str) -> frozenset[str]:
    """The parts of a compound family name that can stand alone (two letters or more)."""
    return frozenset(part for part in fold(family).split() if len(part) > 1)


def given_key(given: str) -> str:
    """A given name as compared: folded, parts joined ("Mary-Ann" -> "maryann")."""
    return fold(given).replace(" ", "")


#: Generation suffixes (HumanName.suffix); academic and professional ones say nothing of who.
GENERATION_SUFFIXES: Final = {
    "jr": "jr",
    "junior": "jr",
    "sr": "sr",
    "senior": "sr",
    "i": "i",
    "ii": "ii",
    "nd": "ii",
    "iii": "iii",
    "rd": "iii",
    "iv": "iv",
    "v": "v",
}


def generation_suffix(suffixes: Iterable[str]) -> str | None:
    """ "Jr.", "JR", "Junior" -> "jr"; "2nd" -> "ii"; None when no generation is given."""
    for suffix in suffixes:
        for word in fold(suffix).split():
            if word in GENERATION_SUFFIXES:
                return GENERATION_SUFFIXES[word]
    return None


# --- nicknames ------------------------------------------------------------------------------

#: Formal given name -> its common nicknames and spelling variants. Hand-compiled for CareBridge
#: from common English usage (plus a few common Spanish hypocorisms), not copied from a
#: published list [K]; extend it when review items show a missing pair. A nickname may belong
#: to several names (Chris, Alex, Pat, Sam): two names match as nicknames when they share a
#: formal name.
NICKNAMES: Final[dict[str, str]] = {
    "abigail": "abby abbie gail",
    "abraham": "abe bram",
    "adeline": "addie addy",
    "agnes": "aggie",
    "alan": "al allen allan",
    "albert": "al bert bertie",
    "alejandro": "alex alejo",
    "alexander": "alex al xander sandy lex",
    "alexandra": "alex sandra sandy lexi alexa",
    "alfred": "al alf alfie fred freddie",
    "allison": "allie ali alison",
    "amanda": "mandy manda",
    "andrew": "andy drew",
    "angela": "angie",
    "anne": "annie ann anna nan nancy",
    "anthony": "tony ant anton",
    "antonio": "tony toni",
    "arthur": "art artie",
    "augustus": "gus augie",
    "barbara": "barb barbie babs",
    "bartholomew": "bart",
    "benjamin": "ben benny benji",
    "bernard": "bernie",
    "beverly": "bev",
    "bradley": "brad",
    "bridget": "biddy bridgette",
    "calvin": "cal",
    "caroline": "carrie carol lina carolyn",
    "cassandra": "cassie sandra",
    "charles": "charlie chuck chas chaz",
    "charlotte": "lottie charlie",
    "christian": "chris",
    "christina": "chris tina chrissy christine kristina",
    "christopher": "chris topher kit",
    "clifford": "cliff",
    "concepcion": "concha",
    "cornelius": "neil connie",
    "cynthia": "cindy",
    "daniel": "dan danny",
    "david": "dave davey",
    "deborah": "debbie deb debra",
    "dennis": "denny",
    "dolores": "lola dee",
    "dominic": "dom nick",
    "donald": "don donnie",
    "dorothy": "dot dottie dolly",
    "douglas": "doug",
    "eduardo": "eddie lalo",
    "edward": "ed eddie ted teddy ned",
    "edwin": "ed eddie",
    "eleanor": "ellie nell nora elle",
    "elizabeth": "liz lizzie beth betty betsy eliza libby lisa elisabeth",
    "emily": "em emmy",
    "ernest": "ernie",
    "eugene": "gene",
    "evelyn": "evie",
    "florence": "flo flossie",
    "frances": "fran frannie",
    "francis": "frank fran",
    "francisco": "paco pancho frank",
    "franklin": "frank",
    "frederick": "fred freddie fritz",
    "gabriel": "gabe",
    "gabriella": "gabby gabriela",
    "gerald": "jerry gerry",
    "gilbert": "gil",
    "gregory": "greg",
    "guadalupe": "lupe",
    "guillermo": "memo",
    "gwendolyn": "gwen",
    "harold": "hal harry",
    "harriet": "hattie",
    "helen": "nell nellie",
    "henry": "hank harry hal",
    "ignacio": "nacho",
    "isabella": "bella izzy isabel",
    "jacob": "jake",
    "jacqueline": "jackie",
    "james": "jim jimmy jamie",
    "janet": "jan",
    "jeffrey": "jeff geoffrey",
    "jennifer": "jen jenny",
    "jeremiah": "jerry jeremy",
    "jerome": "jerry",
    "jessica": "jess jessie",
    "jesus": "chuy",
    "joanne": "jo",
    "john": "jack johnny jon",
    "jonathan": "jon jonny nathan",
    "joseph": "joe joey jose",
    "josephine": "jo josie",
    "joshua": "josh",
    "judith": "judy",
    "katherine": "catherine kathryn katharine kate katie kathy cathy kat kay kit",
    "kathleen": "kathy kate katie kay",
    "kenneth": "ken kenny",
    "kimberly": "kim",
    "lawrence": "larry laurence",
    "leonard": "leo len lenny",
    "louis": "lou",
    "madeline": "maddie madeleine",
    "manuel": "manny",
    "margaret": "maggie meg peggy peg marge margie greta",
    "martin": "marty",
    "mary": "molly polly mae mamie",
    "matthew": "matt",
    "melanie": "mel",
    "melissa": "missy mel",
    "mercedes": "meche",
    "michael": "mike mikey mick",
    "mitchell": "mitch",
    "natalie": "nat",
    "nathaniel": "nate nathan nat",
    "nicholas": "nick nicky",
    "nicole": "nikki",
    "pamela": "pam",
    "patricia": "pat patty tricia trish",
    "patrick": "pat paddy",
    "peter": "pete",
    "philip": "phil phillip",
    "randall": "randy",
    "raymond": "ray",
    "rebecca": "becky becca",
    "richard": "rick ricky dick rich richie",
    "robert": "bob bobby rob robbie bert",
    "roberto": "beto",
    "roger": "rog",
    "ronald": "ron ronnie",
    "rosario": "charo",
    "russell": "russ",
    "samantha": "sam sammie",
    "samuel": "sam sammy",
    "sandra": "sandy",
    "sarah": "sally sadie sara",
    "stanley": "stan",
    "stephen": "steve steven stevie",
    "susan": "sue susie suzanne",
    "teresa": "terry tess theresa",
    "terrence": "terry",
    "theodore": "ted teddy theo",
    "thomas": "tom tommy",
    "timothy": "tim timmy",
    "valerie": "val",
    "victoria": "vicky tori",
    "vincent": "vince vinny",
    "virginia": "ginny",
    "walter": "walt wally",
    "william": "bill billy will willie liam",
    "zachary": "zach zack",
}


def _formal_names_of(table: dict[str, str]) -> dict[str, frozenset[str]]:
    inverted: dict[str, frozenset[str]] = {}
    for formal, nicknames in table.items():
        for nickname in nicknames.split():
            inverted[nickname] = inverted.get(nickname, frozenset()) | {formal}
    return inverted


_FORMAL_NAMES_OF: Final = _formal_names_of(NICKNAMES)


def given_roots(given: str) -> frozenset[str]:
    """The name itself and every formal name it is a nickname of ("bob" -> {bob, robert})."""
    return _FORMAL_NAMES_OF.get(given, frozenset()) | {given}


def are_nicknames(a: str, b: str) -> bool:
    return not given_roots(a).isdisjoint(given_roots(b))


# --- Soundex --------------------------------------------------------------------------------

_SOUNDEX_CODES: Final = {
    **dict.fromkeys("bfpv", "1"),
    **dict.fromkeys("cgjkqsxz", "2"),
    **dict.fromkeys("dt", "3"),
    "l": "4",
    **dict.fromkeys("mn", "5"),
    "r": "6",
}


@lru_cache(maxsize=65536)
def soundex(name: str) -> str:
    """American Soundex as the U.S. National Archives define it ("The Soundex Indexing System",
    archives.gov): first letter, then digit codes; letters with one code side by side, or
    separated only by H or W, count once; a vowel between them makes them count twice."""
    letters = [c for c in name if "a" <= c <= "z"]
    if not letters:
        return ""
    out = [letters[0].upper()]
    previous = _SOUNDEX_CODES.get(letters[0], "")
    for letter in letters[1:]:
        code = _SOUNDEX_CODES.get(letter, "")
        if code and code != previous:
            out.append(code)
            if len(out) == 4:
                break
        if letter not in "hw":
            previous = code
    return "".join(out).ljust(4, "0")


# --- comparison -----------------------------------------------------------------------------


def spelling_outcome(a: str, b: str) -> str:
    """How two different spellings of a name relate: "transposed" (two neighbouring letters
    swapped, Damerau 1964), "typo" (one letter inserted, deleted or replaced; or two edits in a
    long name that Jaro-Winkler still finds close, Winkler 1990), else "different". Optimal
    string alignment counts a transposition as one edit, Levenshtein as two."""
    shortest = min(len(a), len(b))
    if shortest < 3:
        return "different"
    edits = OSA.distance(a, b, score_cutoff=2)
    if edits == 1:
        return "transposed" if Levenshtein.distance(a, b, score_cutoff=2) == 2 else "typo"
    if edits == 2 and shortest >= 6 and JaroWinkler.similarity(a, b) >= 0.9:
        return "typo"
    return "different"


#: Outcomes of a family-name comparison, best first (the order of their weights in `matching`).
FAMILY_OUTCOMES: Final = ("exact", "transposed", "typo", "compound", "different")


def family_outcome(
    a: tuple[str, ...], a_parts: frozenset[str], b: tuple[str, ...], b_parts: frozenset[str]
) -> str:
    """The best agreement between any family name of one record (current, maiden, old) and any
    of the other's. "compound": a hyphenated or double family name shares a part with the
    other ("Garcia" and "Garcia-Lopez")."""
    if not a or not b:
        return "missing"
    if not set(a).isdisjoint(b):
        return "exact"
    best = "different"
    for x in a:
        for y in b:
            outcome = spelling_outcome(x, y)
            if outcome == "transposed":
                return outcome
            if outcome == "typo":
                best = outcome
    if best == "different" and not a_parts.isdisjoint(b_parts):
        return "compound"
    return best


#: Outcomes of a given-name comparison, best first (the order of their weights in `matching`).
GIVEN_OUTCOMES: Final = ("exact", "transposed", "nickname", "typo", "middle-name", "initial", "different")


def given_outcome(
    a: tuple[str, ...], a_middle: frozenset[str], b: tuple[str, ...], b_middle: frozenset[str]
) -> str:
    """The best agreement between the first given names of two records. "middle-name": one
    record's first given name is the other's middle name (a patient known by the middle name);
    "initial": one side has only an initial, and it agrees."""
    if not a or not b:
        return "missing"
    best = len(GIVEN_OUTCOMES) - 1
    for x in a:
        for y in b:
            best = min(best, GIVEN_OUTCOMES.index(_given_pair_outcome(x, y)))
            if best == 0:
                return "exact"
    if best > GIVEN_OUTCOMES.index("middle-name") and (
        not a_middle.isdisjoint(b) or not b_middle.isdisjoint(a)
    ):
        return "middle-name"
    return GIVEN_OUTCOMES[best]


def _given_pair_outcome(x: str, y: str) -> str:
    if x == y:
        return "exact"
    if len(x) == 1 or len(y) == 1:
        return "initial" if x[0] == y[0] else "different"
    if are_nicknames(x, y):
        return "nickname"
    return spelling_outcome(x, y)


def split_name_text(text: str) -> tuple[str, list[str]]:
    """Family and given names from a HumanName that has only `text`: "Family, Given Middle" or
    "Given Middle Family" (the Western order; FHIR HumanName.text has no fixed order)."""
    if "," in text:
        family, _, given = text.partition(",")
        return family.strip(), given.split()
    words = text.split()
    if len(words) < 2:
        return (words[0] if words else ""), []
    return words[-1], words[:-1]


# --- Patient.name ---------------------------------------------------------------------------

#: Which HumanName comes first (HumanName.use, R4 name-use); anonymous names are not read.
_USE_ORDER: Final = {"official": 0, "usual": 1, "": 2, "nickname": 3, "maiden": 4, "old": 5, "temp": 6}


@dataclass(frozen=True, slots=True)
class PersonName:
    family: tuple[str, ...]  # family_key of each family name, current names first
    family_parts: frozenset[str]
    given: tuple[str, ...]  # given_key of each name's first given name (and its first word)
    middle: frozenset[str]  # the other given names
    suffix: str | None  # generation suffix


def person_name(names: Any) -> PersonName:
    """What matching needs of Patient.name: every family name (maiden and old ones too: a record
    of the same person may still carry them), each name's first given name, the other given
    names as middle names, a generation suffix. A name with only `text` is split."""
    usable = [n for n in names if isinstance(n, dict)] if isinstance(names, list) else []
    usable = [n for n in usable if _use(n) != "anonymous"]
    usable.sort(key=lambda n: _USE_ORDER.get(_use(n), 2))
    families: list[str] = []
    parts: set[str] = set()
    givens: list[str] = []
    middles: set[str] = set()
    suffixes: list[str] = []
    for name in usable:
        family, given = _family_and_given(name)
        if key := family_key(family):
            families.append(key)
            parts |= family_parts(family)
        if given and (first := given_key(given[0])):
            givens.append(first)
            words = fold(given[0]).split()
            if len(words) > 1:  # "Mary Ann" is also "Mary"
                givens.append(words[0])
        middles |= {m for m in (given_key(g) for g in given[1:]) if m}
        suffix = name.get("suffix")
        suffixes += [s for s in suffix if isinstance(s, str)] if isinstance(suffix, list) else []
    return PersonName(
        tuple(dict.fromkeys(families)),
        frozenset(parts),
        tuple(dict.fromkeys(givens)),
        frozenset(middles),
        generation_suffix(suffixes),
    )


def _use(name: dict[str, Any]) -> str:
    use = name.get("use")
    return use if isinstance(use, str) else ""


def _family_and_given(name: dict[str, Any]) -> tuple[str, list[str]]:
    family = name.get("family")
    given = name.get("given")
    family = family if isinstance(family, str) else ""
    given = [g for g in given if isinstance(g, str) and g.strip()] if isinstance(given, list) else []
    text = name.get("text")
    if not family and not given and isinstance(text, str):
        return split_name_text(text)
    return family, given
