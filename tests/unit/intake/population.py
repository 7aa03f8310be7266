"""A seeded synthetic population for patient-matching tests: people, their FHIR Patient records
from several facilities, realistic duplicates, and the hard negatives matchers fail on.

Nobody here is real. Names are drawn independently from lists of common US given names and
surnames (popular names, combined at random); birth dates are random; phone numbers are
(NXX) 555-01XX, the range NANP reserves for fiction; SSNs start with 9 (never issued by SSA);
addresses are random numbers on generic street names in made-up towns; MRN systems are on
`.example` domains (RFC 2606).

Who is who (`SyntheticRecord.person`) is the ground truth. Duplicates come from another
facility (another MRN), so only demographics can find them. Variations (DUPLICATE_VARIATIONS)
are typos (insert, delete, substitute, transpose), nicknames, day and month swapped, a
one-digit birth-date error, a birth year off by one, a move, a new phone, missing phone, SSN or
address, a married name, a hyphenated name, given and family swapped; a duplicate has none,
one or two of them, on top of formatting (capitals, abbreviations, phone and ZIP formats).
Hard negatives: twins (same home, birth date and family name), a father and his junior of the
same name at the same home, households sharing address and phone, and namesakes (same given and
family name, same birth year, elsewhere).
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from typing import Any

FACILITIES = tuple(f"http://hospital-{c}.example/mrn" for c in "abcdef")
US_SSN = "http://hl7.org/fhir/sid/us-ssn"
MR_TYPE = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]}

FEMALE = (
    "Mary Patricia Jennifer Linda Elizabeth Barbara Susan Jessica Sarah Karen Nancy Lisa Margaret "
    "Betty Sandra Ashley Dorothy Kimberly Emily Donna Michelle Carol Amanda Melissa Deborah "
    "Stephanie Rebecca Laura Sharon Cynthia Kathleen Amy Shirley Angela Helen Anna Brenda Pamela "
    "Nicole Samantha Katherine Emma Ruth Christine Catherine Debra Rachel Carolyn Janet Virginia "
    "Maria Heather Diane Julie Joyce Victoria Olivia Kelly Christina Lauren Joan Evelyn Judith "
    "Megan Cheryl Andrea Hannah Martha Jacqueline Frances Gloria Ann Teresa Kathryn Sara Janice "
    "Jean Alice Madison Doris Abigail Julia Judy Grace Denise Amber Marilyn Beverly Danielle "
    "Theresa Sophia Marie Diana Brittany Natalie Isabella Charlotte Rose Alexis Kayla Lucía "
    "Guadalupe Dolores Zoë Chloé"
).split()
MALE = (
    "James Robert John Michael David William Richard Joseph Thomas Charles Christopher Daniel "
    "Matthew Anthony Mark Donald Steven Paul Andrew Joshua Kenneth Kevin Brian George Timothy "
    "Ronald Edward Jason Jeffrey Ryan Jacob Gary Nicholas Eric Jonathan Stephen Larry Justin Scott "
    "Brandon Benjamin Samuel Gregory Alexander Frank Patrick Raymond Jack Dennis Jerry Tyler Aaron "
    "Jose Adam Nathan Henry Douglas Zachary Peter Kyle Ethan Walter Noah Jeremy Christian Keith "
    "Roger Terry Gerald Harold Sean Austin Carl Arthur Lawrence Dylan Jesse Jordan Bryan Billy "
    "Joe Bruce Gabriel Logan Albert Willie Alan Juan Wayne Elijah Randy Roy Vincent Ralph Eugene "
    "Russell Bobby Mason Philip Louis José Andrés Ignacio Francisco Manuel"
).split()
SURNAMES = (
    "Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez Lopez "
    "Gonzalez Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson White Harris "
    "Sanchez Clark Ramirez Lewis Robinson Walker Young Allen King Wright Scott Torres Nguyen Hill "
    "Flores Green Adams Nelson Baker Hall Rivera Campbell Mitchell Carter Roberts Gomez Phillips "
    "Evans Turner Diaz Parker Cruz Edwards Collins Reyes Stewart Morris Morales Murphy Cook Rogers "
    "Gutierrez Ortiz Morgan Cooper Peterson Bailey Reed Kelly Howard Ramos Kim Cox Ward Richardson "
    "Watson Brooks Chavez Wood James Bennett Gray Mendoza Ruiz Hughes Price Alvarez Castillo "
    "Sanders Patel Myers Long Ross Foster Jimenez Powell Jenkins Perry Russell Sullivan Bell "
    "Coleman Butler Henderson Barnes Gonzales Fisher Vasquez Simmons Romero Jordan Patterson "
    "Alexander Hamilton Graham Reynolds Griffin Wallace Moreno West Cole Hayes Bryant Herrera "
    "Gibson Ellis Tran Medina Aguilar Stevens Murray Ford Castro Marshall Owens Harrison Fernandez "
    "McDonald Woods Washington Kennedy Wells Vargas Henry Chen Freeman Webb Tucker Guzman Burns "
    "Crawford Olson Simpson Porter Hunter Gordon Mendez Silva Shaw Snyder Mason Dixon Muñoz Hunt "
    "Hicks Holmes Palmer Wagner Black Robertson Boyd Rose Stone Salazar Fox Warren Mills Meyer "
    "Rice Schmidt García Peña O'Brien Núñez Nowak Kowalski Schäfer Dubois Lefèvre Rossi Okafor"
).split()
STREETS = (
    "Main Oak Pine Maple Cedar Elm Washington Lake Hill Walnut Spring North Ridge Church Willow "
    "Mill Sunset Railroad Jackson Park Highland Forest River Meadow Chestnut Franklin Lincoln "
    "Madison Center Jefferson Cherry Dogwood Hickory Locust Laurel Sycamore Valley Prospect Union"
).split()
STREET_TYPES = (("Street", "St"), ("Avenue", "Ave"), ("Road", "Rd"), ("Drive", "Dr"), ("Lane", "Ln"))
TOWNS = (
    ("Brookfield", "IL"),
    ("Cedar Falls", "IA"),
    ("Fairview", "OH"),
    ("Glenwood", "MN"),
    ("Harborview", "WI"),
    ("Kingsport", "IN"),
    ("Lakeside", "MI"),
    ("Maplewood", "MO"),
    ("Oakridge", "KY"),
    ("Riverton", "IL"),
    ("Springdale", "OH"),
    ("Westfield", "IN"),
)

#: Nicknames people give at registration, written for this generator independently of the
#: matcher's table (so a nickname the matcher does not know shows up as a miss).
NICKNAMES_USED = {
    "Robert": "Bob Rob Bobby", "William": "Bill Will Billy", "James": "Jim Jimmy", "John": "Jack Johnny",
    "Michael": "Mike", "Richard": "Rick Dick Rich", "Joseph": "Joe Joey", "Thomas": "Tom Tommy",
    "Charles": "Charlie Chuck", "Christopher": "Chris", "Daniel": "Dan Danny", "Matthew": "Matt",
    "Anthony": "Tony", "Donald": "Don", "Steven": "Steve", "Andrew": "Andy Drew", "Joshua": "Josh",
    "Kenneth": "Ken Kenny", "Timothy": "Tim", "Ronald": "Ron Ronnie", "Edward": "Ed Eddie Ted",
    "Jeffrey": "Jeff", "Jacob": "Jake", "Nicholas": "Nick", "Jonathan": "Jon", "Stephen": "Steve",
    "Lawrence": "Larry", "Benjamin": "Ben", "Samuel": "Sam", "Gregory": "Greg", "Alexander": "Alex",
    "Patrick": "Pat", "Raymond": "Ray", "Douglas": "Doug", "Zachary": "Zach", "Peter": "Pete",
    "Gerald": "Jerry", "Albert": "Al", "Vincent": "Vince", "Philip": "Phil", "Eugene": "Gene",
    "Francisco": "Paco", "Elizabeth": "Liz Beth Betty", "Margaret": "Peggy Maggie Meg",
    "Katherine": "Kate Katie Kathy", "Catherine": "Cathy Kate", "Patricia": "Pat Patty Trish",
    "Jennifer": "Jen Jenny", "Susan": "Sue", "Jessica": "Jess", "Kimberly": "Kim", "Deborah": "Debbie",
    "Rebecca": "Becky", "Pamela": "Pam", "Samantha": "Sam", "Christine": "Chris", "Victoria": "Vicky",
    "Judith": "Judy", "Jacqueline": "Jackie", "Frances": "Fran", "Abigail": "Abby", "Cynthia": "Cindy",
    "Dorothy": "Dot", "Kathleen": "Kathy", "Christina": "Tina", "Sandra": "Sandy", "Alexis": "Lexi",
    "Isabella": "Bella", "Theresa": "Terry", "Teresa": "Tess", "Guadalupe": "Lupe", "Dolores": "Lola",
}  # fmt: skip


@dataclass(slots=True)
class Person:
    id: int
    given: str
    middle: str | None
    family: str
    gender: str
    birth: date
    phone: str | None
    address: dict[str, Any] | None
    ssn: str | None
    suffix: str | None = None
    maiden: str | None = None
    tags: tuple[str, ...] = ()  # twin, junior, senior, namesake, household


@dataclass(frozen=True, slots=True)
class SyntheticRecord:
    person: int
    patient: dict[str, Any]
    variations: tuple[str, ...] = ()  # how this record departs from the person's details
    tags: tuple[str, ...] = field(default=())


#: Duplicate variations and their relative frequency (hand-set to resemble registration errors
#: and life changes; a duplicate gets 0, 1 or 2 of them).
DUPLICATE_VARIATIONS = {
    "nickname": 10, "given-typo": 9, "family-typo": 9, "swapped-day-month": 5, "birth-date-typo": 3,
    "birth-year-off-by-one": 1, "moved": 16, "new-phone": 16, "no-phone": 6, "no-ssn": 6, "no-address": 3,
    "married-name": 3, "hyphenated-name": 2, "given-family-swapped": 1,
}  # fmt: skip


class _Generator:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.used_phones: set[str] = set()
        self.used_ssns: set[str] = set()
        self.mrns = 0
        # Zipf-like weights: common names are common, so namesakes happen by themselves too.
        self.weights = {
            id(names): [1 / (i + 8) for i in range(len(names))] for names in (FEMALE, MALE, SURNAMES)
        }

    def pick(self, names: tuple[str, ...] | list[str]) -> str:
        return self.rng.choices(names, weights=self.weights[id(names)])[0]

    def given(self, gender: str) -> str:
        return self.pick(FEMALE if gender == "female" else MALE)

    def phone(self) -> str:
        while True:
            number = f"{self.rng.randint(201, 989)}55501{self.rng.randint(0, 99):02d}"
            if number not in self.used_phones:
                self.used_phones.add(number)
                return number

    def ssn(self) -> str:
        while True:
            number = (
                f"9{self.rng.randint(0, 99):02d}{self.rng.randint(1, 99):02d}{self.rng.randint(1, 9999):04d}"
            )
            if number not in self.used_ssns:
                self.used_ssns.add(number)
                return number

    def address(self, town: tuple[str, str] | None = None) -> dict[str, Any]:
        rng = self.rng
        city, state = town or rng.choice(TOWNS)
        street_type = rng.choice(STREET_TYPES)[0]
        line = [f"{rng.randint(1, 9899)} {rng.choice(STREETS)} {street_type}"]
        if rng.random() < 0.2:
            line.append(f"Apt {rng.randint(1, 30)}{rng.choice('ABCD')}")
        zip_code = (
            f"{6 + TOWNS.index((city, state)) % 3}{TOWNS.index((city, state)):02d}{rng.randint(10, 12)}"
        )
        return {"use": "home", "line": line, "city": city, "state": state, "postalCode": zip_code}

    def birth(self, first: int = 1935, last: int = 2015) -> date:
        return date(first, 1, 1) + timedelta(days=self.rng.randint(0, (last - first + 1) * 365 - 1))

    def person(self, pid: int, **fixed: Any) -> Person:
        rng = self.rng
        gender = fixed.pop("gender", None) or rng.choices(("female", "male", "other"), (49, 49, 2))[0]
        details: dict[str, Any] = {
            "given": self.given(gender if gender != "other" else rng.choice(("female", "male"))),
            "middle": self.given(gender if gender != "other" else "female") if rng.random() < 0.4 else None,
            "family": self.pick(SURNAMES),
            "birth": self.birth(),
            "phone": self.phone() if rng.random() < 0.92 else None,
            "address": self.address() if rng.random() < 0.95 else None,
            "ssn": self.ssn() if rng.random() < 0.6 else None,
        }
        details.update(fixed)
        return Person(pid, gender=gender, **details)

    def household(self, first_id: int) -> list[Person]:
        """A home of 1-5 people; some with twins, some with a junior."""
        rng = self.rng
        home, phone = self.address(), self.phone()
        family = self.pick(SURNAMES)
        shared = {"address": home, "tags": ("household",)}
        adult = self.person(first_id, family=family, phone=phone, birth=self.birth(1945, 1990), **shared)
        people = [adult]
        if rng.random() < 0.6:  # a partner, who kept their own family name a fifth of the time
            partner_family = family if rng.random() < 0.8 else self.pick(SURNAMES)
            people.append(
                self.person(
                    first_id + 1,
                    family=partner_family,
                    phone=phone if rng.random() < 0.5 else self.phone(),
                    birth=adult.birth + timedelta(days=rng.randint(-3000, 3000)),
                    **shared,
                )
            )
        children = rng.choice((0, 1, 2, 3))
        lowest = max(adult.birth.year + 18, 1960)
        for _ in range(children):
            birth = self.birth(min(lowest, 2014), min(lowest + 25, 2015))
            child = self.person(first_id + len(people), family=family, phone=phone, birth=birth, **shared)
            people.append(child)
            if rng.random() < 0.08:  # twins: same day, another given name
                gender = rng.choice(("female", "male"))
                names = FEMALE if gender == "female" else MALE
                twin_name = rng.choice([n for n in names if n[0] != child.given[0]])
                twin = self.person(
                    first_id + len(people),
                    family=family,
                    phone=phone,
                    birth=birth,
                    given=twin_name,
                    gender=gender,
                    **shared,
                )
                child.tags = twin.tags = ("household", "twin")
                people.append(twin)
        if adult.gender == "male" and rng.random() < 0.12:  # a junior of the same name
            birth = self.birth(min(lowest, 2014), min(lowest + 20, 2015))
            junior = self.person(
                first_id + len(people),
                given=adult.given,
                family=family,
                gender="male",
                phone=phone,
                birth=birth,
                **shared,
            )
            junior.suffix, junior.tags = "Jr", ("household", "junior")
            adult.suffix = "Sr" if rng.random() < 0.3 else None
            adult.tags = ("household", "senior")
            people.append(junior)
        return people

    def namesake(self, pid: int, other: Person) -> Person:
        """Same given and family name and birth year as someone else, living elsewhere."""
        birth = date(other.birth.year, 1, 1) + timedelta(days=self.rng.randint(0, 364))
        if birth == other.birth:
            birth += timedelta(days=1)
        return self.person(
            pid, given=other.given, family=other.family, gender=other.gender, birth=birth, tags=("namesake",)
        )


def synthetic_population(
    people: int = 5000, *, seed: int = 5, duplicate_share: float = 0.35
) -> list[SyntheticRecord]:
    """`people` distinct people, each with a record from one facility; `duplicate_share` of them
    with one more record (a quarter of those, two) from other facilities, varied. Records come
    shuffled, as they would arrive."""
    gen = _Generator(seed)
    persons: list[Person] = []
    while len(persons) < people:
        roll = gen.rng.random()
        if roll < 0.30:
            persons += gen.household(len(persons))
        elif roll < 0.33 and persons:
            persons.append(gen.namesake(len(persons), gen.rng.choice(persons)))
        else:
            persons.append(gen.person(len(persons)))
    persons = persons[:people]
    records: list[SyntheticRecord] = []
    for person in persons:
        facilities = gen.rng.sample(FACILITIES, 3)
        records.append(SyntheticRecord(person.id, _patient(gen, person, facilities[0]), (), person.tags))
        if gen.rng.random() < duplicate_share:
            for facility in facilities[1 : 2 if gen.rng.random() < 0.75 else 3]:
                varied, applied = _vary(gen, person)
                records.append(
                    SyntheticRecord(person.id, _patient(gen, varied, facility), applied, person.tags)
                )
    gen.rng.shuffle(records)
    return records


def _vary(gen: _Generator, person: Person) -> tuple[Person, tuple[str, ...]]:
    rng = gen.rng
    count = rng.choices((0, 1, 2), (15, 50, 35))[0]
    kinds = list(DUPLICATE_VARIATIONS)
    chosen: list[str] = []
    while len(chosen) < count:
        kind = rng.choices(kinds, [DUPLICATE_VARIATIONS[k] for k in kinds])[0]
        if kind not in chosen and _applicable(kind, person):
            chosen.append(kind)
    chosen.sort(key=kinds.index)  # a nickname before a typo, a swap before a digit error
    varied = replace(person)
    for kind in chosen:
        varied = _VARIATIONS[kind](gen, varied)
    return varied, tuple(chosen)


def _applicable(kind: str, person: Person) -> bool:
    if kind == "nickname":
        return person.given in NICKNAMES_USED
    if kind == "swapped-day-month":
        return person.birth.day <= 12 and person.birth.day != person.birth.month
    if kind == "married-name":
        return person.gender == "female" and person.birth.year < 1998
    return True


def _typo(rng: random.Random, word: str) -> str:
    """One keying error: a letter inserted, deleted or replaced, or two neighbours swapped."""
    letters = list(word)
    i = rng.randrange(1, len(letters)) if len(letters) > 1 else 0
    kind = rng.choice(("insert", "delete", "substitute", "transpose"))
    if kind == "insert":
        letters.insert(i, rng.choice(string.ascii_lowercase))
    elif kind == "delete" and len(letters) > 3:
        del letters[i]
    elif kind == "transpose" and i < len(letters) - 1 and letters[i] != letters[i + 1]:
        letters[i], letters[i + 1] = letters[i + 1], letters[i]
    else:
        letters[i] = rng.choice([c for c in string.ascii_lowercase if c != letters[i].lower()])
    return "".join(letters)


def _birth_date_typo(gen: _Generator, p: Person) -> Person:
    digits = list(p.birth.strftime("%Y%m%d"))
    while True:
        i = gen.rng.choice((2, 3, 5, 6, 7))  # decade, year, month units, day tens and units
        trial = digits.copy()
        trial[i] = gen.rng.choice([d for d in "0123456789" if d != digits[i]])
        text = "".join(trial)
        try:
            birth = date(int(text[:4]), int(text[4:6]), int(text[6:]))
        except ValueError:
            continue
        if birth.year <= 2015:
            return replace(p, birth=birth)


def _moved(gen: _Generator, p: Person) -> Person:
    same_town = p.address is not None and gen.rng.random() < 0.4
    town = (p.address["city"], p.address["state"]) if same_town and p.address else None
    return replace(p, address=gen.address(town))


def _married(gen: _Generator, p: Person) -> Person:
    return replace(p, family=gen.pick(SURNAMES), maiden=p.family if gen.rng.random() < 0.3 else None)


def _swap_day_month(gen: _Generator, p: Person) -> Person:
    return replace(p, birth=date(p.birth.year, p.birth.day, p.birth.month))


def _year_off(gen: _Generator, p: Person) -> Person:
    year = p.birth.year + gen.rng.choice((-1, 1))
    return replace(p, birth=date(year, p.birth.month, min(p.birth.day, 28)))


_VARIATIONS = {
    "nickname": lambda gen, p: replace(p, given=gen.rng.choice(NICKNAMES_USED[p.given].split())),
    "given-typo": lambda gen, p: replace(p, given=_typo(gen.rng, p.given)),
    "family-typo": lambda gen, p: replace(p, family=_typo(gen.rng, p.family)),
    "swapped-day-month": _swap_day_month,
    "birth-date-typo": _birth_date_typo,
    "birth-year-off-by-one": _year_off,
    "moved": _moved,
    "new-phone": lambda gen, p: replace(p, phone=gen.phone()),
    "no-phone": lambda gen, p: replace(p, phone=None),
    "no-ssn": lambda gen, p: replace(p, ssn=None),
    "no-address": lambda gen, p: replace(p, address=None),
    "married-name": _married,
    "hyphenated-name": lambda gen, p: replace(p, family=f"{p.family}-{gen.pick(SURNAMES)}"),
    "given-family-swapped": lambda gen, p: replace(p, given=p.family, family=p.given),
}


def _patient(gen: _Generator, p: Person, facility: str) -> dict[str, Any]:
    """A FHIR R4 Patient as a facility would send it, with its own formatting habits."""
    rng = gen.rng
    gen.mrns += 1
    shout = rng.random() < 0.3  # HL7 v2 feeds often send names in capitals
    name: dict[str, Any] = {"use": "official", "family": p.family.upper() if shout else p.family}
    given = [p.given] + ([p.middle] if p.middle and rng.random() < 0.7 else [])
    name["given"] = [g.upper() for g in given] if shout else given
    if p.suffix:
        name["suffix"] = [rng.choice((p.suffix, p.suffix + ".", p.suffix.upper()))]
    names = [name] + ([{"use": "maiden", "family": p.maiden}] if p.maiden else [])
    identifiers: list[dict[str, Any]] = [{"system": facility, "value": f"MRN{gen.mrns:07d}", "type": MR_TYPE}]
    if p.ssn:
        identifiers.append({"system": US_SSN, "value": f"{p.ssn[:3]}-{p.ssn[3:5]}-{p.ssn[5:]}"})
    patient: dict[str, Any] = {
        "resourceType": "Patient",
        "identifier": identifiers,
        "name": names,
        "gender": p.gender,
        "birthDate": p.birth.isoformat(),
    }
    if p.phone:
        number = rng.choice(("({0}) {1}-{2}", "{0}-{1}-{2}", "{0}{1}{2}", "+1 {0} {1} {2}"))
        patient["telecom"] = [
            {"system": "phone", "value": number.format(p.phone[:3], p.phone[3:6], p.phone[6:])}
        ]
    if p.address:
        address = dict(p.address)
        if rng.random() < 0.5:  # the street type spelled out or abbreviated, "#" for "Apt"
            line = address["line"][0]
            for long, short in STREET_TYPES:
                line = line.replace(long, short)
            address["line"] = [line] + [unit.replace("Apt ", "#") for unit in address["line"][1:]]
        if rng.random() < 0.2:
            address["postalCode"] += f"-{rng.randint(1000, 9999)}"
        patient["address"] = [address]
    return patient
