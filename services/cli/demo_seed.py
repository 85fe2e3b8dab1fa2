"""A deterministic demo catalog for ``codex-exports dev``: libraries, series, books, two users.

The catalog looks like a real Codex library (comics, manga, ebooks) and carries the awkward values
an exporter must handle: multi-line summaries, commas and quotes, non-ASCII text, missing metadata,
deleted books, a smart collection, and a reader whose view is narrowed by library access and by a
sharing-tag deny granted through an access group.

Every row is derived from ``random.Random(seed)`` and a fixed base date, so two databases seeded
with the same seed hold identical catalogs. Only the argon2 password hashes differ (random salts).

Sign-ins: ``demo``/``demo`` (admin, sees everything) and ``reader``/``reader`` (reader, restricted).
"""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg  # type: ignore[import-untyped, unused-ignore]
from argon2 import PasswordHasher

from shared.codex_tables import CODEX_TABLES, insert_rows

DEMO_SIGN_IN: list[tuple[str, str]] = [("demo", "demo"), ("reader", "reader")]

# Codex hashes with the Rust `argon2` crate's defaults (Argon2id, m=19 MiB, t=2, p=1); the same
# parameters here keep the demo hashes indistinguishable from Codex's and cheap to compute.
_HASHER = PasswordHasher(time_cost=2, memory_cost=19_456, parallelism=1)

_BASE = datetime(2023, 1, 1, 9, 0, tzinfo=UTC)
_LIVE_BOOKS = 3_300
_DELETED_BOOKS = 48
_MATURE_SHARE = 0.12


@dataclass(frozen=True)
class DemoUser:
    username: str
    password: str
    id: uuid.UUID


@dataclass(frozen=True)
class SeedResult:
    """What the catalog holds after seeding; ``books`` counts live (non-deleted) books."""

    libraries: int
    series: int
    books: int
    users: list[DemoUser]


def hash_password(password: str) -> str:
    """An argon2id PHC string, as Codex stores in ``users.password_hash``."""
    return _HASHER.hash(password)


async def seed_demo(conn: asyncpg.Connection, *, seed: int = 42) -> SeedResult:
    """Load the demo catalog and users unless the ``demo`` user already exists.

    Runs in one transaction under an advisory lock, so concurrent callers seed once.
    """
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('codex-exports-demo-seed'))")
        if await conn.fetchval("SELECT 1 FROM users WHERE username = 'demo'"):
            return await _existing_result(conn)
        catalog = _DemoCatalog(seed)
        catalog.build()
        hashes = await asyncio.gather(
            *(asyncio.to_thread(hash_password, password) for _, password in DEMO_SIGN_IN)
        )
        catalog.add_users(list(hashes))
        for table in CODEX_TABLES:  # in dependency order
            if catalog.rows[table]:
                # Codex's other NOT NULL columns (link ids, normalized names, search titles,
                # row timestamps) are filled as Codex fills them, at a fixed moment.
                await insert_rows(conn, table, catalog.rows[table], now=_BASE)
        # This product's own table, not one of Codex's: its two columns are named here.
        await conn.copy_records_to_table(
            "user_library_access",
            schema_name="exports",
            records=catalog.library_access,
            columns=("user_id", "library_id"),
        )
        return SeedResult(
            libraries=len(catalog.rows["libraries"]),
            series=len(catalog.rows["series"]),
            books=sum(1 for row in catalog.rows["books"] if not row["deleted"]),
            users=catalog.users,
        )


async def _existing_result(conn: asyncpg.Connection) -> SeedResult:
    row = await conn.fetchrow(
        "SELECT (SELECT count(*) FROM libraries) AS libraries,"
        " (SELECT count(*) FROM series) AS series,"
        " (SELECT count(*) FROM books WHERE NOT deleted) AS books"
    )
    ids = {
        r["username"]: r["id"]
        for r in await conn.fetch(
            "SELECT username, id FROM users WHERE username = ANY($1::text[])",
            [name for name, _ in DEMO_SIGN_IN],
        )
    }
    users = [DemoUser(name, password, ids[name]) for name, password in DEMO_SIGN_IN if name in ids]
    return SeedResult(int(row["libraries"]), int(row["series"]), int(row["books"]), users)


# --- Vocabulary ---------------------------------------------------------------------------------

_ADJECTIVES = [
    "Silent", "Crimson", "Broken", "Hollow", "Electric", "Last", "Wild", "Midnight", "Glass",
    "Iron", "Paper", "Savage", "Golden", "Distant", "Quiet", "Burning", "Velvet", "Neon", "Lonely",
    "Secret", "Frozen", "Forgotten", "Ninth", "Scarlet",
]  # fmt: skip
_NOUNS = [
    "Lantern", "Orbit", "Harbor", "Kingdom", "Circus", "Frontier", "Engine", "Garden", "Tide",
    "Empire", "Signal", "Ghosts", "Rangers", "Saints", "Wolves", "Machines", "Skies", "Protocol",
    "Covenant", "Requiem", "Crown", "Archive", "Compass", "Moons",
]  # fmt: skip
_PLACES = [
    "Night City", "the Deep", "Ashfall", "Café Lumière", "the Northern Reach", "Ægir's Hall",
    "東京", "New Avalon", "the Glass Quarter", "Kyōto", "Reykjavík", "São Paulo", "Lower Harbor",
    "the Salt Marshes", "Kraków", "Zürich",
]  # fmt: skip
_SINGLE_WORD_TITLES = [
    "Saga", "Outcast", "Lazarus", "Monstress", "Paper Girls", "Descender", "Hollowmark",
    "Nightjar", "Wayfarer", "Stormbreak", "Kingsmoot", "Ember", "Afterlight", "Meridian", "Halcyon",
    "Vagrant", "Solstice", "Undertow", "Brightwater", "Ironsong",
]  # fmt: skip
_FRENCH_NOUNS = [
    ("Ombres", "Shadows"), ("Étoiles", "Stars"), ("Loups", "Wolves"), ("Marées", "Tides"),
    ("Fantômes", "Ghosts"), ("Rêves", "Dreams"), ("Cendres", "Ashes"), ("Jardins", "Gardens"),
]  # fmt: skip
# Romaji, kanji, English: manga titles are "A no B" with a native title and a translation.
_JP_WORDS = [
    ("Kaze", "風", "Wind"), ("Hoshi", "星", "Star"), ("Tsuki", "月", "Moon"),
    ("Yume", "夢", "Dream"), ("Sora", "空", "Sky"), ("Umi", "海", "Sea"),
    ("Hana", "花", "Flower"), ("Ken", "剣", "Sword"), ("Yoru", "夜", "Night"),
    ("Hikari", "光", "Light"), ("Mori", "森", "Forest"), ("Tora", "虎", "Tiger"),
    ("Ryū", "竜", "Dragon"), ("Kokoro", "心", "Heart"), ("Machi", "街", "Town"),
    ("Kage", "影", "Shadow"), ("Yuki", "雪", "Snow"), ("Hi", "火", "Fire"),
]  # fmt: skip
_MANGA_ENGLISH_FIRST = [
    "Grand", "Blade", "Dragon", "Spirit", "Phantom", "Steel", "Rising", "Shonen", "Galaxy",
    "Cursed", "Demon", "Sky", "Ninja", "Rookie",
]  # fmt: skip
_MANGA_ENGLISH_SECOND = [
    "Tide", "Academy", "Hunter", "Quest", "Chronicle", "Breakers", "Alchemist", "Pirates",
    "Festival", "Cooking Club", "Squad", "Detective", "Idol", "Dungeon",
]  # fmt: skip
_EBOOK_SERIES_SUFFIXES = ["Chronicles", "Cycle", "Trilogy", "Saga", "Mysteries", "Sequence"]

_GENRES = [
    "Action", "Adventure", "Biography", "Comedy", "Cooking", "Crime", "Drama", "Fantasy",
    "Historical", "Horror", "Literary Fiction", "Mecha", "Mystery", "Non-Fiction", "Psychological",
    "Romance", "Sci-Fi", "Slice of Life", "Sports", "Superhero", "Supernatural", "Thriller",
    "Western",
]  # fmt: skip
_GENRES_BY_KIND = {
    "comic": ["Action", "Adventure", "Crime", "Drama", "Fantasy", "Horror", "Mystery", "Sci-Fi",
              "Superhero", "Supernatural", "Thriller", "Western", "Comedy"],
    "manga": ["Action", "Adventure", "Comedy", "Cooking", "Drama", "Fantasy", "Horror", "Mecha",
              "Psychological", "Romance", "Sci-Fi", "Slice of Life", "Sports", "Supernatural"],
    "ebook": ["Biography", "Crime", "Fantasy", "Historical", "Horror", "Literary Fiction",
              "Mystery", "Non-Fiction", "Romance", "Sci-Fi", "Thriller"],
}  # fmt: skip
_TAGS = [
    "time travel", "found family", "female lead", "post-apocalyptic", "space opera",
    "school life", "martial arts", "magic system", "cyberpunk", "noir", "coming of age",
    "anthology", "adaptation", "award winner", "black & white", "full color", "webcomic origin",
    "crossover", "villain protagonist", "slow burn", "mythology", "Norse mythology", "Tokyo",
    "café", "heist", "dragons", "robots", "vampires", "detectives", "rock 'n' roll",
]  # fmt: skip

_FIRST_NAMES = [
    "Ana", "Marcus", "Zoë", "Håkon", "Renée", "José", "Priya", "Liam", "Chloé", "Dmitri", "Mei",
    "Björn", "Inès", "Oluwaseun", "Siobhán", "Mateo", "Nadia", "Élodie", "Tomás", "Freya", "Kwame",
    "Lucía", "Søren", "Amara", "Rafael", "Grace", "Jonah", "Ingrid",
]  # fmt: skip
_LAST_NAMES = [
    "Castellanos", "Lindqvist", "Dubois", "Ortiz", "Okafor", "Müller", "O'Brien", "García",
    "Petrov", "Haddad", "Kowalski", "Andersen", "Moreau", "Novak", "Fitzgerald", "Brennan",
    "Costa", "van der Berg", "Łukasiewicz", "Kim", "Nguyen", "Ferreira", "Holm", "Achebe", "Rossi",
]  # fmt: skip
_JP_FIRST_NAMES = [
    "Haruto", "Aiko", "Kenji", "Yuki", "Sora", "Ren", "Hana", "Daichi", "Natsuki", "Takeshi",
    "Emi", "Shōta", "Ayumi", "Kōji",
]  # fmt: skip
_JP_LAST_NAMES = [
    "Tanaka", "Nakamura", "Sato", "Yamamoto", "Ishikawa", "Kobayashi", "Fujimoto", "Morita",
    "Hayashi", "Kuroda", "Shimizu", "Ōta", "Saitō",
]  # fmt: skip
_PEN_NAMES = ["KAZE", "Mochi", "Rook", "Ninefox", "Yokai-san"]

_PUBLISHERS = {
    "comic": ["Northstar Comics", "Red Harbor Press", "Skylark Studios", "Éditions Minuit",
              "Lanternlight", "Ironwood Comics"],
    "manga": ["Hoshisora Shuppan", "Tsukimi Books", "Moonrise Manga", "Kōyōsha",
              "Seven Seas Ink"],
    "ebook": ["Juniper & Vale", "Ashgrove Publishing", "Maison Étoile", "Ravenwood Press, Ltd.",
              "Little Owl Books"],
}  # fmt: skip

_SUMMARY_SENTENCES = [
    "{hero} never wanted to be a hero, but when {thing} turns up in {place}, there is no going "
    "back.",
    "In {place}, everyone has a secret, and {hero} is about to learn the worst one.",
    '"Don\'t open the door," her mother said. {hero} opened it anyway.',
    "A story about friendship, grief, and {thing}.",
    "{hero} and {hero2} run a small café in {place}; business is slow, the customers are strange, "
    "and the coffee is, by all accounts, terrible.",
    "When the tide went out and never came back, {place} learned to live on the seabed.",
    "{villain} wants {thing}. {hero} wants a nap. Only one of them will get what they want.",
    "Part heist, part love story, all chaos.",
    "Ægir, god of the sea, has thrown the same party for a thousand years; this year, the guests "
    "are out for blood.",
    "東京, 2049: the rain never stops, and neither does {hero}.",
    "{hero}'s journey from {place} to {place2} spans 3,000 miles, two wars, and one very stubborn "
    "cat.",
    'The sequel to the award-winning "{other}", set ten years later.',
    "Contains scenes some readers may find upsetting: violence, loss, and 50% more puns than "
    "strictly necessary.",
    "Nobody in {place} remembers the night the lanterns went out — nobody except {hero}.",
    "{hero} inherits {thing} and a debt of ¥10,000,000, payable to {villain}.",
    "A quiet, funny, heartbreaking look at growing up between {place} and {place2}.",
]
_BLURBS = [
    '*"Breathtaking."* — The Daily Lantern',
    "#1 bestselling series!",
    "\"I couldn't put it down, then I couldn't pick it back up.\" — The Paper Crane Review",
    "Now a major animated series.",
    "★★★★★ “Essential reading.”",
]
_THINGS = [
    "a stolen crown", "the last lantern", "a map that redraws itself", "an android with no memory",
    "a cursed sword", "the family café", "a letter from the future", "a very polite dragon",
    "a jar of stars", "the key to Ægir's cellar",
]  # fmt: skip
_VILLAINS = [
    "The Gray Cardinal", "Madame Noctis", "the Lantern Guild", "Baron Kessler", "Old Man Winter",
    "a rival ramen shop",
]  # fmt: skip
_NOTES = [
    "Re-read in 2024, still great.",
    'Loved the art; the ending, though... "meh".',
    "Best arc: {place}.\nWould recommend to anyone who liked {other}.",
    "Dropped after volume 3, might pick it back up.",
    "Café scenes are the best part ☕",
    "Started strong, lost me midway. Art is gorgeous, though.",
    "Lent my copy to {hero}, never got it back!",
    "Read with the book club:\n- pacing: slow\n- characters: wonderful\n- would re-read: yes",
]
_CHAPTER_WORDS = [
    "The Storm Breaks", "A Quiet Morning", "Rival", "Promise Under the Cherry Trees", "東京 Drift",
    "The Long Night", "Homecoming", "First Snow", "Broken Blade", "Festival of Lights",
    "Face to Face", "Beyond the Wall", "Café Reunion", "The Last Train", "Deal with a Demon",
]  # fmt: skip
_SOURCES = {
    "comic": ["ComicVine", "League of Comic Geeks"],
    "manga": ["AniList", "MyAnimeList", "MangaUpdates"],
    "ebook": ["Goodreads", "Open Library"],
}
_ROLES_COMIC = ["writer", "penciller", "inker", "colorist", "letterer", "cover_artist"]


@dataclass
class _Series:
    id: uuid.UUID
    library_id: uuid.UUID
    kind: str
    name: str
    title: str
    path: str
    year: int | None
    language: str | None
    publisher: str | None
    authors: list[dict[str, str]]
    created_at: datetime
    book_count: int
    style: str  # comic: issue, manga: volume/chapter, ebook: novel
    status: str | None
    genre_names: list[str] = field(default_factory=list)
    books: list[_Book] = field(default_factory=list)


@dataclass
class _Book:
    id: uuid.UUID
    format: str
    page_count: int
    created_at: datetime


class _DemoCatalog:
    """Builds every row in memory, in a fixed order, from one ``random.Random``."""

    def __init__(self, seed: int) -> None:
        # Demo data, not secrets: a seeded PRNG is the point (same seed, same catalog).
        self.rng = random.Random(seed)  # noqa: S311
        # Codex's tables, a row a dict of the columns the demo gives (shared.codex_tables
        # fills the rest); exports.user_library_access (this product's own) as (user, library).
        self.rows: dict[str, list[dict[str, Any]]] = {table: [] for table in CODEX_TABLES}
        self.library_access: list[tuple[uuid.UUID, uuid.UUID]] = []
        self.users: list[DemoUser] = []
        self.paths: set[str] = set()  # every book's path (unique within a library in Codex)
        self.series: list[_Series] = []
        self.library_ids: list[uuid.UUID] = []
        self.genre_ids: dict[str, uuid.UUID] = {}
        self.tag_ids: dict[str, uuid.UUID] = {}
        self.mature: set[uuid.UUID] = set()
        self.demo_id = self.new_id()
        self.reader_id = self.new_id()

    # -- helpers ----------------------------------------------------------------------------------

    def add(self, table: str, **row: Any) -> None:
        """One row of a Codex table, by column name."""
        self.rows[table].append(row)

    def new_id(self) -> uuid.UUID:
        return uuid.UUID(int=self.rng.getrandbits(128), version=4)

    def moment(self, after: datetime = _BASE, within_days: int = 30) -> datetime:
        """A whole second in the ``within_days`` after ``after``."""
        return after + timedelta(seconds=self.rng.randrange(within_days * 86_400))

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def person(self, kind: str) -> tuple[str, str]:
        """(display name, sort name)."""
        if self.chance(0.04):
            pen = self.rng.choice(_PEN_NAMES)
            return pen, pen
        if kind == "manga":
            first, last = self.rng.choice(_JP_FIRST_NAMES), self.rng.choice(_JP_LAST_NAMES)
        else:
            first, last = self.rng.choice(_FIRST_NAMES), self.rng.choice(_LAST_NAMES)
        return f"{first} {last}", f"{last}, {first}"

    def author(self, kind: str, role: str) -> dict[str, str]:
        name, sort_name = self.person(kind)
        return {"name": name, "role": role, "sort_name": sort_name}

    def summary(self, *, sentences: tuple[int, int], multi_line: float, blurb: float) -> str:
        templates = iter(self.rng.sample(_SUMMARY_SENTENCES, 7))

        def sentence() -> str:
            hero, hero2 = self.rng.sample(_FIRST_NAMES, 2)
            place, place2 = self.rng.sample(_PLACES, 2)
            return next(templates).format(
                hero=hero,
                hero2=hero2,
                place=place,
                place2=place2,
                thing=self.rng.choice(_THINGS),
                villain=self.rng.choice(_VILLAINS),
                other=self.rng.choice(_SINGLE_WORD_TITLES),
            )

        paragraphs = [" ".join(sentence() for _ in range(self.rng.randint(*sentences)))]
        if self.chance(multi_line):
            paragraphs.append(" ".join(sentence() for _ in range(self.rng.randint(1, 3))))
        if self.chance(blurb):
            paragraphs.append(self.rng.choice(_BLURBS))
        return "\n\n".join(paragraphs)

    # -- build ------------------------------------------------------------------------------------

    def build(self) -> None:
        self.build_vocabulary()
        self.build_series()
        self.balance_book_counts()
        for series in self.series:
            self.build_books(series)
        self.build_deleted_books()
        self.build_collections()
        self.build_read_lists()
        self.build_sharing()
        self.build_ratings()
        self.build_progress()

    def build_vocabulary(self) -> None:
        for name in _GENRES:
            self.genre_ids[name] = self.new_id()
            self.add("genres", id=self.genre_ids[name], name=name)
        for name in _TAGS:
            self.tag_ids[name] = self.new_id()
            self.add("tags", id=self.tag_ids[name], name=name)

    def build_series(self) -> None:
        for name, path, kind, count in (
            ("Comics", "/library/comics", "comic", 120),
            ("Manga", "/library/manga", "manga", 120),
            ("Books", "/library/books", "ebook", 80),
        ):
            library_id = self.new_id()
            self.library_ids.append(library_id)
            created = _BASE - timedelta(days=30)
            self.add(
                "libraries",
                id=library_id,
                name=name,
                path=path,
                created_at=created,
                updated_at=created,
            )
            taken: set[str] = set()
            for _ in range(count):
                self.series.append(self.new_series(library_id, path, kind, taken))

    def new_series(self, library_id: uuid.UUID, root: str, kind: str, taken: set[str]) -> _Series:
        rng = self.rng
        series_id = self.new_id()
        year: int | None = rng.randint(1986, 2024)
        alternates: list[tuple[str, str]] = []
        language = "en"
        style = {"comic": "issue", "manga": "volume", "ebook": "novel"}[kind]
        if kind == "comic":
            if self.chance(0.12):
                fr, en = rng.choice(_FRENCH_NOUNS)
                place = rng.choice([p for p in _PLACES if not p.startswith("the ")])
                title = f"Les {fr} de {place}"
                alternates.append(("English", f"The {en} of {place}"))
                language = "fr"
            else:
                title = rng.choice(
                    [
                        f"The {rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)}",
                        f"{rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)}",
                        rng.choice(_SINGLE_WORD_TITLES),
                        f"{rng.choice(_NOUNS)} of {rng.choice(_PLACES)}",
                    ]
                )
            name = f"{title} ({year})"
            book_count = rng.choice([1, 4, 6, 8, 12, 12, 18, 24, 36, 50, 60])
        elif kind == "manga":
            language = "ja" if self.chance(0.35) else "en"
            if self.chance(0.7):
                (ra, ka, ea), (rb, kb, eb) = rng.sample(_JP_WORDS, 2)
                if self.chance(0.15):
                    romaji, native, english = f"Tōkyō {rb}", f"東京{kb}", f"Tokyo {eb}"
                else:
                    romaji, native, english = f"{ra} no {rb}", f"{ka}の{kb}", f"{eb} of the {ea}"
                title = romaji if language == "ja" else english
                alternates += [("Japanese", native), ("Romaji", romaji)]
                if title != english:
                    alternates.append(("English", english))
            else:
                title = f"{rng.choice(_MANGA_ENGLISH_FIRST)} {rng.choice(_MANGA_ENGLISH_SECOND)}"
                if self.chance(0.3):
                    title += "!"
            name = title
            style = "chapter" if self.chance(0.3) else "volume"
            book_count = rng.randint(15, 45) if style == "chapter" else rng.randint(1, 28)
        else:
            language = rng.choice(["en", "en", "en", "en", "de", "fr", "es"])
            title = rng.choice(
                [
                    f"The {rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)} "
                    f"{rng.choice(_EBOOK_SERIES_SUFFIXES)}",
                    f"Tales of {rng.choice(_PLACES)}",
                    f"{rng.choice(_PLACES)} {rng.choice(_EBOOK_SERIES_SUFFIXES)}",
                ]
            )
            title = title[0].upper() + title[1:]  # "the Deep Mysteries" -> "The Deep Mysteries"
            name = title
            book_count = rng.randint(1, 9)
        name = _unique(name, taken)
        taken.add(name)
        if kind == "comic" and self.chance(0.25):
            # Directory-derived names keep the year; metadata titles usually drop it.
            title = name
        publisher = None if self.chance(0.05) else rng.choice(_PUBLISHERS[kind])
        if self.chance(0.03):
            year = None
        if self.chance(0.03):
            language = ""
        authors = self.series_authors(kind)
        created = self.moment(within_days=400)
        status = rng.choices(
            ["ongoing", "ended", "hiatus", "abandoned", "unknown", None],
            weights=[40, 35, 9, 5, 9, 2],
        )[0]
        series = _Series(
            id=series_id,
            library_id=library_id,
            kind=kind,
            name=name,
            title=title,
            path=f"{root}/{_file_safe(name)}",
            year=year,
            language=language or None,
            publisher=publisher,
            authors=authors,
            created_at=created,
            book_count=book_count,
            style=style,
            status=status,
        )
        self.add(
            "series",
            id=series_id,
            library_id=library_id,
            path=series.path,
            name=name,
            created_at=created,
            updated_at=self.moment(created, 200),
        )
        for label, alt in alternates:
            self.add(
                "series_alternate_titles",
                id=self.new_id(),
                series_id=series_id,
                label=label,
                title=alt,
            )
        self.series_links(series)
        return series

    def series_authors(self, kind: str) -> list[dict[str, str]]:
        if kind == "comic":
            roles = [
                "writer",
                "penciller",
                *self.rng.sample(_ROLES_COMIC[2:], self.rng.randint(0, 4)),
            ]
            return [self.author(kind, role) for role in roles]
        if kind == "manga":
            mangaka = self.author(kind, "writer")
            if self.chance(0.6):
                people = [mangaka, {**mangaka, "role": "penciller"}]
            else:
                people = [mangaka, self.author(kind, "penciller")]
            if self.chance(0.5):
                people.append(self.author("comic", "translator"))
            return people
        people = [self.author(kind, "writer")]
        if self.chance(0.15):
            people.append(self.author(kind, "writer"))
        if self.chance(0.1):
            people.append(self.author(kind, "translator"))
        return people

    def series_links(self, series: _Series) -> None:
        rng = self.rng
        genres = rng.sample(_GENRES_BY_KIND[series.kind], rng.randint(1, 4))
        series.genre_names = sorted(genres)
        for name in series.genre_names:
            self.add("series_genres", series_id=series.id, genre_id=self.genre_ids[name])
        for name in sorted(rng.sample(_TAGS, rng.choice([0, 0, 1, 2, 3, 5]))):
            self.add("series_tags", series_id=series.id, tag_id=self.tag_ids[name])
        for source in _SOURCES[series.kind]:
            if self.chance(0.45):
                rating = Decimal(rng.randint(350, 980)) / 10
                votes = None if self.chance(0.1) else int(10 ** rng.uniform(1, 5.4))
                self.add(
                    "series_external_ratings",
                    id=self.new_id(),
                    series_id=series.id,
                    source_name=source,
                    rating=rating,
                    vote_count=votes,
                )

    def balance_book_counts(self) -> None:
        """Nudge per-series counts so the catalog holds exactly ``_LIVE_BOOKS`` live books."""
        total = sum(s.book_count for s in self.series)
        growable = [s for s in self.series if s.book_count > 1]
        while total != _LIVE_BOOKS:
            s = self.rng.choice(growable)
            if total < _LIVE_BOOKS:
                s.book_count += 1
                total += 1
            elif s.book_count > 2:
                s.book_count -= 1
                total -= 1

    def build_books(self, series: _Series) -> None:
        rng = self.rng
        main_format = {
            "comic": rng.choices(["cbz", "cbr", "pdf"], weights=[65, 30, 5])[0],
            "manga": rng.choices(["cbz", "cbr"], weights=[80, 20])[0],
            "ebook": rng.choices(["epub", "pdf"], weights=[85, 15])[0],
        }[series.kind]
        arcs = [f"{rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)}" for _ in range(12)]
        novel_titles = _novel_titles(rng, series.book_count)
        created = series.created_at
        number = Decimal(0)
        for index in range(series.book_count):
            fmt = main_format if not self.chance(0.08) else self.other_format(series.kind)
            # Numbers: issues and volumes count up; chapter runs have the odd ".5" extra.
            if series.style == "chapter" and index and number % 1 == 0 and self.chance(0.07):
                number += Decimal("0.5")
            else:
                number = Decimal(int(number) + 1)
            title, file_name = self.book_names(series, number, fmt, index, arcs, novel_titles)
            pages = _page_count(rng, series.style, fmt)
            created = self.moment(created, 7)  # a new issue or volume every few days
            book = _Book(self.new_id(), fmt, pages, created)
            series.books.append(book)
            self.add_book(series, book, file_name, title, number, deleted=False)
        self.finish_series_metadata(series, number)

    def other_format(self, kind: str) -> str:
        return self.rng.choice({"comic": ["cbz", "cbr", "pdf"], "manga": ["cbz", "cbr", "pdf"],
                                "ebook": ["epub", "pdf"]}[kind])  # fmt: skip

    def book_names(
        self,
        series: _Series,
        number: Decimal,
        fmt: str,
        index: int,
        arcs: list[str],
        novel_titles: list[str],
    ) -> tuple[str | None, str]:
        rng = self.rng
        base = _file_safe(series.name)
        title: str | None
        if series.style == "issue":
            roll = rng.random()
            if roll < 0.45:
                title = f"{arcs[index // 5]}, Part {index % 5 + 1}"
            elif roll < 0.9:
                title = f"{series.title} #{number}"
            else:
                title = None
            file_name = f"{base} #{int(number):03d}.{fmt}"
        elif series.style == "volume":
            roll = rng.random()
            title = (
                f"Vol. {number}"
                if roll < 0.6
                else f"{series.title}, Vol. {number}"
                if roll < 0.95
                else None
            )
            file_name = f"{base} v{int(number):02d}.{fmt}"
        elif series.style == "chapter":
            head = f"Chapter {number}"
            title = f"{head}: {rng.choice(_CHAPTER_WORDS)}" if self.chance(0.7) else head
            whole, _, frac = str(number).partition(".")
            file_name = f"{base} c{int(whole):03d}{'.' + frac if frac else ''}.{fmt}"
        else:
            title = novel_titles[index] if not self.chance(0.03) else None
            author = series.authors[0]["sort_name"].split(",")[0]
            label = _file_safe(novel_titles[index])
            file_name = f"{author} - {_file_safe(series.title)} {int(number):02d} - {label}.{fmt}"
        return title, file_name

    def add_book(
        self,
        series: _Series,
        book: _Book,
        file_name: str,
        title: str | None,
        number: Decimal,
        *,
        deleted: bool,
    ) -> None:
        rng = self.rng
        size = _file_size(rng, book.format, book.page_count)
        self.paths.add(f"{series.path}/{file_name}")
        self.add(
            "books",
            id=book.id,
            series_id=series.id,
            library_id=series.library_id,
            path=f"{series.path}/{file_name}",
            file_name=file_name,
            file_size=size,
            format=book.format,
            page_count=book.page_count,
            deleted=deleted,
            created_at=book.created_at,
            updated_at=self.moment(book.created_at, 60),
        )
        if self.chance(0.03):
            return  # no metadata at all: exports fall back to the file name
        summary_odds = {"issue": 0.5, "volume": 0.6, "chapter": 0.3, "novel": 0.85}[series.style]
        summary = (
            self.summary(sentences=(1, 2), multi_line=0.15, blurb=0.05)
            if self.chance(summary_odds)
            else None
        )
        authors = list(series.authors)
        roles = {author["role"] for author in authors}
        if self.chance(0.2) and series.kind == "comic" and "cover_artist" not in roles:
            authors.append(self.author("comic", "cover_artist"))
        year = series.year + int(number) // 12 if series.year is not None else None
        self.add(
            "book_metadata",
            id=self.new_id(),
            book_id=book.id,
            title=title,
            number=number,
            summary=summary,
            publisher=series.publisher,
            language_iso=series.language,
            year=min(year, 2024) if year is not None else None,
            authors_json=json.dumps(authors, ensure_ascii=False) if not self.chance(0.05) else None,
        )
        if not deleted and self.chance(0.2):
            genre_id = self.genre_ids[rng.choice(series.genre_names)]
            self.add("book_genres", book_id=book.id, genre_id=genre_id)
        if not deleted and self.chance(0.08):
            self.add("book_tags", book_id=book.id, tag_id=self.tag_ids[rng.choice(_TAGS)])

    def finish_series_metadata(self, series: _Series, last_number: Decimal) -> None:
        rng = self.rng
        status = series.status
        count = series.book_count
        volumes: int | None
        chapters: float | None = None
        if series.style == "chapter":
            chapters = float(last_number) + (rng.randint(0, 30) if status != "ended" else 0)
            volumes = max(1, int(chapters) // 9) if self.chance(0.7) else None
        elif status == "ended":
            volumes = count + (rng.choice([0, 0, 0, 1, 2]))  # a few gaps in the collection
        elif status in ("ongoing", "hiatus"):
            volumes = count + rng.randint(0, 6) if self.chance(0.6) else None
        else:
            volumes = None
        if series.style == "volume" and volumes is not None:
            chapters = volumes * rng.choice([8, 9, 10, 11]) + rng.choice([0.0, 0.0, 0.5])
        summary = (
            self.summary(sentences=(1, 4), multi_line=0.3, blurb=0.15)
            if not self.chance(0.08)
            else None
        )
        title_sort = _title_sort(series.title)
        self.add(
            "series_metadata",
            series_id=series.id,
            title=series.title,
            title_sort=title_sort,
            summary=summary,
            publisher=series.publisher,
            status=status,
            language=series.language,
            year=series.year,
            total_volume_count=volumes,
            total_chapter_count=chapters,
            authors_json=json.dumps(series.authors, ensure_ascii=False) if series.authors else None,
            created_at=series.created_at,
            updated_at=self.moment(series.created_at, 300),
        )

    def build_deleted_books(self) -> None:
        """Duplicates a scanner replaced (cbr → cbz) or files removed from disk."""
        for _ in range(_DELETED_BOOKS):
            series = self.rng.choice(self.series)
            original = self.rng.choice(series.books)
            position = series.books.index(original) + 1
            fmt = self.other_format(series.kind)
            book = _Book(self.new_id(), fmt, original.page_count, original.created_at)
            title = f"{series.title} ({position}) [old scan]"
            copy = 1
            file_name = f"{_file_safe(series.name)} ({position}) ({copy}).{fmt}"
            # Codex keeps one row per file path in a library: a second old copy is "(2)".
            while f"{series.path}/{file_name}" in self.paths:
                copy += 1
                file_name = f"{_file_safe(series.name)} ({position}) ({copy}).{fmt}"
            self.add_book(series, book, file_name, title, Decimal(position), deleted=True)

    def build_collections(self) -> None:
        rng = self.rng
        names = [
            "Favorites", "Award Winners", "Staff Picks", "Summer Reading", "Space & Stars",
            "Cozy Café Stories", "Norse Myths: Ægir & Co.", "東京 Nights", "Re-read, Someday",
        ]  # fmt: skip
        for name in names:
            collection_id = self.new_id()
            self.add("collections", id=collection_id, name=name, condition=None)
            for series in rng.sample(self.series, rng.randint(5, 35)):
                self.add("collection_series", collection_id=collection_id, series_id=series.id)
        # A smart collection keeps its members as rows too; exports must skip it by its condition.
        smart_id = self.new_id()
        condition = {
            "match": "all",
            "rules": [
                {"field": "genre", "operator": "is", "value": "Horror"},
                {"field": "read_status", "operator": "is", "value": "unread"},
            ],
        }
        self.add("collections", id=smart_id, name="Unread Horror", condition=json.dumps(condition))
        for series in self.series:
            if "Horror" in series.genre_names:
                self.add("collection_series", collection_id=smart_id, series_id=series.id)

    def build_read_lists(self) -> None:
        rng = self.rng
        comics = [s for s in self.series if s.kind == "comic" and len(s.books) >= 4]
        event_id = self.new_id()
        self.add("read_lists", id=event_id, name="Night of Lanterns (Crossover Event)")
        for series in rng.sample(comics, 5):
            for book in series.books[:4]:
                self.add("read_list_books", read_list_id=event_id, book_id=book.id)
        manga = [s for s in self.series if s.kind == "manga"]
        starter_id = self.new_id()
        self.add("read_lists", id=starter_id, name="Start Here: Manga Essentials")
        for series in rng.sample(manga, 12):
            self.add("read_list_books", read_list_id=starter_id, book_id=series.books[0].id)
        live = [book for series in self.series for book in series.books]
        for name in ["Beach Reads 2024", "Year of Ægir", "Weekend Binge", "Book Club, Season 2"]:
            list_id = self.new_id()
            self.add("read_lists", id=list_id, name=name)
            for book in rng.sample(live, rng.randint(10, 50)):
                self.add("read_list_books", read_list_id=list_id, book_id=book.id)

    def build_sharing(self) -> None:
        rng = self.rng
        mature_id, kids_id = self.new_id(), self.new_id()
        self.add("sharing_tags", id=mature_id, name="mature")
        self.add("sharing_tags", id=kids_id, name="kids")
        for library_id in self.library_ids:
            in_library = [s for s in self.series if s.library_id == library_id]
            for series in rng.sample(in_library, max(3, round(len(in_library) * _MATURE_SHARE))):
                self.mature.add(series.id)
                self.add("series_sharing_tags", series_id=series.id, sharing_tag_id=mature_id)
            for series in rng.sample(in_library, 6):
                if series.id not in self.mature:
                    self.add("series_sharing_tags", series_id=series.id, sharing_tag_id=kids_id)
        family_id = self.new_id()
        self.add("access_groups", id=family_id, name="Family")
        self.add(
            "access_group_sharing_tags",
            access_group_id=family_id,
            sharing_tag_id=mature_id,
            access_mode="deny",
        )
        self.add("user_access_groups", user_id=self.reader_id, access_group_id=family_id)
        # The reader sees Comics and Manga, not Books.
        for library_id in self.library_ids[:2]:
            self.library_access.append((self.reader_id, library_id))

    def reader_visible(self, series: _Series) -> bool:
        return series.library_id in self.library_ids[:2] and series.id not in self.mature

    def picked_series(
        self, demo_odds: float, reader_odds: float
    ) -> Iterator[tuple[uuid.UUID, _Series]]:
        """(user, series) for the series each user picks, with these odds, among those they see."""
        for user_id, odds, visible in (
            (self.demo_id, demo_odds, lambda s: True),
            (self.reader_id, reader_odds, self.reader_visible),
        ):
            for series in self.series:
                if visible(series) and self.chance(odds):
                    yield user_id, series

    def build_ratings(self) -> None:
        rng = self.rng
        for user_id, series in self.picked_series(0.35, 0.4):
            rating = rng.choice([rng.randrange(10, 101, 10), rng.randint(1, 100)])
            notes = None
            if self.chance(0.4):
                notes = rng.choice(_NOTES).format(
                    place=rng.choice(_PLACES),
                    other=rng.choice(_SINGLE_WORD_TITLES),
                    hero=rng.choice(_FIRST_NAMES),
                )
            self.add(
                "user_series_ratings",
                id=self.new_id(),
                user_id=user_id,
                series_id=series.id,
                rating=rating,
                notes=notes,
            )

    def build_progress(self) -> None:
        rng = self.rng
        for user_id, series in self.picked_series(0.3, 0.35):
            mode = rng.choice(["finished", "reading", "reading", "sampled"])
            done = {
                "finished": len(series.books),
                "reading": rng.randint(0, len(series.books) - 1),
                "sampled": 0,
            }[mode]
            when = self.moment(series.books[-1].created_at, 120)
            for book in series.books[:done]:
                percentage = 1.0 if self.chance(0.5) else None
                self.add_progress(user_id, book, book.page_count, percentage, when, completed=True)
            if done < len(series.books):
                self.in_progress(user_id, series.books[done])

    def add_progress(
        self,
        user_id: uuid.UUID,
        book: _Book,
        page: int,
        percentage: float | None,
        when: datetime,
        *,
        completed: bool,
    ) -> None:
        """A read_progress row; ``when`` is its update, and its completion if completed."""
        self.add(
            "read_progress",
            id=self.new_id(),
            user_id=user_id,
            book_id=book.id,
            current_page=page,
            progress_percentage=percentage,
            completed=completed,
            completed_at=when if completed else None,
            updated_at=when,
        )

    def in_progress(self, user_id: uuid.UUID, book: _Book) -> None:
        rng = self.rng
        when = self.moment(book.created_at, 90)
        page, percentage = 0, None
        roll = rng.random()
        if book.format == "epub" or roll < 0.2:
            # Reflowable books, and some sync clients, report a position only.
            percentage = round(rng.uniform(0.02, 0.97), 4)
        elif roll < 0.35:
            page = rng.randint(1, book.page_count - 1)
            percentage = round(page / book.page_count, 4)
        else:
            page = rng.randint(1, book.page_count - 1)  # page-only, as comic readers report
        self.add_progress(user_id, book, page, percentage, when, completed=False)

    def add_users(self, hashes: Sequence[str]) -> None:
        (demo, demo_pw), (reader, reader_pw) = DEMO_SIGN_IN
        created = _BASE - timedelta(days=30)
        for user_id, username, password_hash, role, created_at in (
            (self.demo_id, demo, hashes[0], "admin", created),
            (self.reader_id, reader, hashes[1], "reader", created + timedelta(days=2)),
        ):
            self.add(
                "users",
                id=user_id,
                username=username,
                password_hash=password_hash,
                role=role,
                created_at=created_at,
            )
        self.users = [
            DemoUser(demo, demo_pw, self.demo_id),
            DemoUser(reader, reader_pw, self.reader_id),
        ]


def _unique(name: str, taken: set[str]) -> str:
    candidate, n = name, 2
    while candidate in taken:
        candidate = f"{name} {_roman(n)}"
        n += 1
    return candidate


def _roman(n: int) -> str:
    return {2: "II", 3: "III", 4: "IV", 5: "V", 6: "VI", 7: "VII", 8: "VIII"}.get(n, str(n))


def _file_safe(text: str) -> str:
    return text.replace("/", "-").replace(":", " -").replace("?", "").replace('"', "'")


def _a(noun: str) -> str:
    return ("An " if noun[0] in "AEIOU" else "A ") + noun


def _title_sort(title: str) -> str:
    for article in ("The ", "A ", "An ", "Les ", "Le ", "La "):
        if title.startswith(article):
            return f"{title[len(article) :]}, {article.strip()}"
    return title


def _novel_titles(rng: random.Random, count: int) -> list[str]:
    titles: list[str] = []
    while len(titles) < count:
        title = rng.choice(
            [
                f"The {rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)}",
                f"{rng.choice(_NOUNS)} of {rng.choice(_PLACES)}",
                f"{_a(rng.choice(_NOUNS))} in {rng.choice(_PLACES)}",
                f"{rng.choice(_ADJECTIVES)}, {rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)}",
            ]
        )
        if title not in titles:
            titles.append(title)
    return titles


def _page_count(rng: random.Random, style: str, fmt: str) -> int:
    if style == "issue":
        return rng.randint(20, 48)
    if style == "volume":
        return rng.randint(160, 232)
    if style == "chapter":
        return rng.randint(16, 28)
    return rng.randint(120, 640) if fmt == "epub" else rng.randint(90, 480)


def _file_size(rng: random.Random, fmt: str, pages: int) -> int:
    if fmt == "epub":
        return rng.randint(250_000, 6_000_000)
    if fmt == "pdf":
        return pages * rng.randint(60_000, 900_000)
    return pages * rng.randint(350_000, 2_200_000)
