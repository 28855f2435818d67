"""Writing Switchboard matchers in Python (built into components by componentize-py).

The Python counterpart of the Rust SDK (plugins/sdk). componentize-py generates the
bindings of `switchboard:matcher@0.3.0` (plugins/wit) when the component is built
(`wit_world`): `evaluate` receives the whole request as one `bytes` buffer, in the
layout its doc comment describes. This module reads that buffer where it lies
(`Request`: each column is a `memoryview` cast to its type, so no Python object is made
for an item until it is read), and adds accessors over the columns, a verdicts builder,
and config parsing that refuses bad input with a message instead of a trap.

A matcher module defines `class Matcher(exports.Matcher)` with `init` and `evaluate`:

    from wit_world import exports
    from switchboard_matcher import Needs, Request, Symbols, VerdictsBuilder, all_eligible, representatives

    class Matcher(exports.Matcher):
        def init(self, config: str) -> Needs:
            return Needs.SKILLS                       # or raise Err("why not")

        def evaluate(self, request: bytes):
            request = Request(request)                # reads the header; columns on demand
            reps = representatives(request)
            if reps is None:
                return all_eligible()                 # queues: no opinion
            billing = Symbols(request).lookup("billing")
            out = VerdictsBuilder(request.count)
            for k in range(request.count):
                if reps.skill_level(k, billing) < 5:
                    out.exclude(k, "billing below 5")
            return out.finish()

Columns are `memoryview`s: index them, slice them, iterate over them, `len()` them,
`.tolist()` them; they have no `.index` (a loop finds an item in a short run faster than
`bytes.find` or `.tolist().index`). A matcher that loops over every candidate does best
to read the columns itself (`reps.columns`) rather than call an accessor per candidate
(each call is a Python function call), to `.tolist()` the columns it reads in full
(in the sandbox's CPython, indexing a list costs about 210 instructions, a memoryview
about 560, and `.tolist()` about 110 an item), and to collect its exclusions in lists
for `VerdictsBuilder.exclude_all`: plugins/python/site_affinity.py does all three.

Attribute values are `Value_Text(symbol)`, `Value_Number(float)` and
`Value_Boolean(bool)`, small classes of this module (the 0.2.0 bindings' names), each
with `.value`; a presence is a `Presence`, an `IntEnum` (so it compares equal to the
numbers of the `presence` column).

A request that is not in the layout of 0.3.0 raises `MalformedRequest` (a `ValueError`)
saying what is wrong, when the part concerned is first read: the call traps and the
host logs the message. Nothing is read past a section's end.

Everything here runs inside the sandbox: no file, clock or environment. Import what you
need at the top of your module (the build snapshots the interpreter after importing it;
nothing can be read from disk later). Importing this module freezes what the heap holds
then (`gc.freeze()`): the cyclic garbage collector no longer scans the interpreter's
objects, which otherwise cost a call 0.7 to 0.9 million instructions every few calls.
"""

from bisect import bisect_left
from enum import IntEnum
import gc
from itertools import chain
import json
import struct
import sys
from typing import Any, Dict, Iterable, List, Optional, Tuple, Union

from componentize_py_types import Err
from wit_world.imports import types

__all__ = [
    "Action",
    "AttributeRuns",
    "Attributes",
    "Config",
    "Conversation",
    "Err",
    "MalformedRequest",
    "Needs",
    "Presence",
    "QueueColumns",
    "RepColumns",
    "Reps",
    "Request",
    "SkillRuns",
    "SymbolRuns",
    "Symbols",
    "Value",
    "Value_Boolean",
    "Value_Number",
    "Value_Text",
    "Verdicts",
    "VerdictsBuilder",
    "all_eligible",
    "candidate_id",
    "conversation_text",
    "conversation_value",
    "queues",
    "representatives",
    "spans",
]

Needs = types.Needs
Verdicts = types.Verdicts

# A symbol that is absent (an `option` that is `none`).
NONE = 0xFFFFFFFF


class Action(IntEnum):
    """The supervisor's action (the header's byte 4)."""

    ASSIGN = 0
    TRANSFER = 1


class Presence(IntEnum):
    """A representative's presence, as numbered in the `presence` column."""

    AVAILABLE = 0
    BUSY = 1
    BUSY_DND = 2
    AWAY = 3
    OFFLINE = 4


class Value:
    """An attribute value: `Value_Text` (`.value` a symbol), `Value_Number` (a float) or
    `Value_Boolean` (a bool). Compares equal to a value of the same kind and content."""

    __slots__ = ("value",)

    def __init__(self, value) -> None:
        self.value = value

    def __eq__(self, other) -> bool:
        return type(other) is type(self) and other.value == self.value

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.value))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.value!r})"


class Value_Text(Value):  # noqa: N801 (the names of the 0.2.0 bindings)
    """A text value: `.value` is its symbol."""

    __slots__ = ()


class Value_Number(Value):  # noqa: N801
    """A number: `.value` is a float."""

    __slots__ = ()


class Value_Boolean(Value):  # noqa: N801
    """A boolean: `.value` is a bool."""

    __slots__ = ()


def _value(kind: int, text: int, number: float) -> Value:
    if kind == 0:
        return Value_Text(text)
    if kind == 2:
        return Value_Boolean(number != 0.0)
    return Value_Number(number)


class MalformedRequest(ValueError):
    """The request is not in the layout of `switchboard:matcher@0.3.0` (the host and
    this module disagree): raised, so the call traps, rather than read garbage."""


# Section numbers (plugins/wit, `evaluate`).
SYMBOL_TEXT = 0
SYMBOL_ENDS = 1
CONVERSATION = 2
CONVERSATION_SKILLS = 3  # skills, levels: 3 and 4
CONVERSATION_ATTRIBUTES = 5  # keys, kinds, texts, numbers: 5 to 8
PRESENCE = 9
CAPACITY = 10
FREE_CAPACITY = 11
IDLE_MINUTES = 12
SKILLS = 13  # ends, skills, levels: 13 to 15
QUEUES = 16  # ends, symbols: 16 and 17
USER_GROUPS = 18  # ends, symbols: 18 and 19
ATTRIBUTES = 20  # ends, keys, kinds, texts, numbers: 20 to 24
CANDIDATE_IDS = 25  # text, ends: 25 and 26
QUEUE_COLUMNS = 27  # ids, names, priorities, intent-based: 27 to 30

# The header's `needs` bits (bit `i` is the `i`th flag of `needs`).
_PRESENCE, _CAPACITY, _IDLE_TIME, _SKILLS = 1, 2, 4, 8
_QUEUES, _USER_GROUPS, _ATTRIBUTES, _CANDIDATE_IDS = 16, 32, 64, 128

_HEADER = struct.Struct("<IBBHqII")
_ENTRY = struct.Struct("<II").unpack_from  # a section's (offset, length) in the table
_FIELDS = struct.Struct("<9I").unpack_from  # the conversation's fields
_TYPES = {"B": "u8", "I": "u32", "i": "s32", "f": "f32", "d": "f64"}
if sys.byteorder != "little" or [struct.calcsize(code) for code in "BIifd"] != [1, 4, 4, 4, 8]:
    raise ImportError(
        "switchboard_matcher reads requests in place: it needs a little-endian machine with "
        "4-byte C ints and floats (wasm32 is one)"
    )
_EMPTY = {code: memoryview(b"").cast(code) for code in _TYPES}

# What a slot holds until it is first read. (Lazy parts are properties and functions
# that test for it: cheaper in the sandbox's CPython than `__getattr__`, whose
# AttributeError costs as much as reading two sections.)
_UNREAD: Any = object()


class _Buffer:
    """A request's bytes and its section table. What reads sections holds this, never
    the `Request` (whose caches hold them): no reference cycle, so a call's objects and
    the request's bytes are freed when it returns, with no garbage collection."""

    __slots__ = ("data", "view", "size", "sections", "count", "needs_bits")

    def __init__(self, data: bytes, size: int, sections: int, count: int, needs_bits: int) -> None:
        self.data, self.view, self.size, self.sections = data, memoryview(data), size, sections
        self.count, self.needs_bits = count, needs_bits

    def section_bytes(self, n: int) -> Tuple[int, int]:
        if n >= self.sections:
            return 0, 0
        start, end = _ENTRY(self.data, 24 + 8 * n)
        end += start
        if end > self.size:
            raise _beyond(n, start, end, self.size)
        return start, end

    def section(self, n: int, code: str = "B") -> memoryview:
        if n >= self.sections:
            return _EMPTY[code]
        start, end = _ENTRY(self.data, 24 + 8 * n)
        end += start
        if end > self.size:
            raise _beyond(n, start, end, self.size)
        if code == "B":
            return self.view[start:end]
        try:
            return self.view[start:end].cast(code)
        except TypeError:  # its length is not a multiple of the item's size
            raise MalformedRequest(
                f"malformed request: section {n} ({start}+{end - start}) is not an array of {_TYPES[code]}"
            ) from None

    def column(self, n: int, code: str, what: str) -> memoryview:
        """A per-candidate section: one item per candidate."""
        items = self.section(n, code)
        if len(items) != self.count:
            raise MalformedRequest(
                f"malformed request: section {n} ({what}) has {len(items)} items for {self.count} candidates"
            )
        return items


class Request:
    """One call, read from the `bytes` that `evaluate` receives: the header at once, the
    rest where it lies, when first read.

    `count` (candidates), `action` (an `Action`), `now_ms` (the time of the request, Unix
    milliseconds: the guest has no clock), `is_queues` (the candidates are queues rather
    than representatives), `sent` (the `Needs` whose sections the host sent),
    `conversation` (a `Conversation`), `data` (the buffer). `section(n, code)` reads any
    section as a memoryview of `code` items ("B" u8, "I" u32 or symbol, "i" s32, "f"
    f32, "d" f64): a later minor version's sections too.
    """

    __slots__ = (
        "data",
        "count",
        "action",
        "is_queues",
        "now_ms",
        "needs_bits",
        "sections",
        "_buffer",
        "_conversation",
        "_reps",
        "_queues",
        "_ids",
    )

    def __init__(self, data: Union[bytes, bytearray, memoryview]) -> None:
        if type(data) is not bytes and not isinstance(data, (bytes, bytearray)):
            data = bytes(data)
        self.data = data
        size = len(data)
        if size < 24:
            raise MalformedRequest(f"malformed request: {size} bytes, shorter than the 24-byte header")
        count, action, kind, _, now_ms, needs, sections = _HEADER.unpack_from(data)
        if 24 + 8 * sections > size:
            raise MalformedRequest(
                f"malformed request: its table of {sections} sections does not fit in its {size} bytes"
            )
        if kind > 1:
            raise MalformedRequest(f"malformed request: unknown kind of candidates {kind}")
        self.count = count
        self.action = _ACTIONS[action == 1]
        self.is_queues = kind == 1
        self.now_ms = now_ms
        self.needs_bits = needs
        self.sections = sections
        self._buffer = _Buffer(data, size, sections, count, needs)
        self._conversation = self._reps = self._queues = self._ids = _UNREAD

    @property
    def sent(self) -> Needs:
        """The `Needs` whose sections this request carries."""
        return Needs(self.needs_bits & 0xFF)

    @property
    def conversation(self) -> "Conversation":
        """The conversation being routed."""
        c = self._conversation
        if c is _UNREAD:
            c = self._conversation = Conversation(self._buffer)
        return c

    def section_bytes(self, n: int) -> Tuple[int, int]:
        """(start, end) of section `n` in `data` ((0, 0) when the table has no such
        entry), checked to lie within it."""
        return self._buffer.section_bytes(n)

    def section(self, n: int, code: str = "B") -> memoryview:
        """Section `n` as a memoryview of `code` items, read in place (empty when the
        table has no such entry)."""
        return self._buffer.section(n, code)

    def candidate_id(self, k: int) -> Optional[str]:
        """The id of candidate `k` (None unless `init` declared `Needs.CANDIDATE_IDS`)."""
        ids = self._ids
        if ids is _UNREAD:
            ids = self._ids = self._read_ids()
        if ids is None or not 0 <= k < self.count:
            return None
        base, ends = ids
        start = ends[k - 1] if k else 0
        return _utf8(self.data, base + start, base + ends[k], f"the id of candidate {k}")

    def _read_ids(self) -> Optional[Tuple[int, memoryview]]:
        if not self.needs_bits & _CANDIDATE_IDS:
            return None
        b = self._buffer
        start, end = b.section_bytes(CANDIDATE_IDS)
        ends = b.column(CANDIDATE_IDS + 1, "I", "candidate id ends")
        if ends and ends[-1] > end - start:
            raise MalformedRequest(
                f"malformed request: section {CANDIDATE_IDS + 1} (candidate id ends) ends at {ends[-1]}, past the "
                f"{end - start} bytes of section {CANDIDATE_IDS}"
            )
        return start, ends


_ACTIONS = (Action.ASSIGN, Action.TRANSFER)


def _beyond(n: int, start: int, end: int, size: int) -> MalformedRequest:
    return MalformedRequest(
        f"malformed request: section {n} ({start}+{end - start}) lies beyond its {size} bytes"
    )


def _disagree(at: int, columns: Tuple[memoryview, ...], what: str) -> MalformedRequest:
    """Parallel sections `at`, `at + 1`, ... whose lengths differ."""
    n = len(columns[0])
    j = next(j for j, c in enumerate(columns) if len(c) != n)
    return MalformedRequest(
        f"malformed request: section {at + j} ({what}) has {len(columns[j])} items "
        f"where section {at} has {n}"
    )


def _run_ends(b: _Buffer, n: int, items: int, what: str) -> memoryview:
    """Section `n`: per-candidate run ends over the `items` items of section `n + 1`."""
    ends = b.column(n, "I", what + " ends")
    if ends and ends[-1] > items:
        raise MalformedRequest(
            f"malformed request: section {n} ({what} ends) ends at {ends[-1]}, "
            f"past the {items} items of section {n + 1}"
        )
    return ends


def _attribute_columns(b: _Buffer, at: int, what: str) -> Tuple[memoryview, ...]:
    """Sections `at` to `at + 3`: keys, kinds, texts, numbers."""
    section = b.section
    columns = section(at, "I"), section(at + 1), section(at + 2, "I"), section(at + 3, "d")
    keys, kinds, texts, numbers = columns
    n = len(keys)
    if len(kinds) != n or len(texts) != n or len(numbers) != n:
        raise _disagree(at, columns, what)
    return columns


def _utf8(data, start: int, end: int, what: str) -> str:
    if start > end:
        raise MalformedRequest(f"malformed request: {what} ends before it starts ({start}..{end})")
    try:
        return str(data[start:end], "utf-8")
    except UnicodeDecodeError as e:
        raise MalformedRequest(f"malformed request: {what} is not UTF-8 ({e.reason})") from None


class Symbols:
    """The request's symbol table. Resolve the names a matcher cares about once per call
    with `lookup`, then compare integers per candidate."""

    __slots__ = ("_data", "_start", "_end", "_ends")

    def __init__(self, request: Request) -> None:
        b = request._buffer
        self._data = b.data
        self._start, self._end = b.section_bytes(SYMBOL_TEXT)
        ends = self._ends = b.section(SYMBOL_ENDS, "I")
        if ends and ends[-1] > self._end - self._start:
            raise MalformedRequest(
                f"malformed request: the symbols end at {ends[-1]}, "
                f"past the {self._end - self._start} bytes of their text"
            )

    def __len__(self) -> int:
        return len(self._ends)

    def lookup(self, name: str) -> Optional[int]:
        """The symbol of `name`, or None when nothing in this request is called so: one
        `bytes.find` over the table and a bisect of the symbols' ends."""
        needle = name.encode()
        n = len(needle)
        ends = self._ends
        if n == 0:
            start = 0
            for i, end in enumerate(ends):
                if end == start:
                    return i
                start = end
            return None
        data, base, stop = self._data, self._start, self._end
        pos = data.find(needle, base, stop)
        while pos != -1:
            # The only symbol that can end at pos + n and start at pos (ends increase).
            at = pos - base
            i = bisect_left(ends, at + n)
            if i < len(ends) and ends[i] == at + n and (ends[i - 1] if i else 0) == at:
                return i
            pos = data.find(needle, pos + 1, stop)
        return None

    def lookup_all(self, names: Iterable[str]) -> List[int]:
        """The symbols of those of `names` this request mentions."""
        found = (self.lookup(name) for name in names)
        return [s for s in found if s is not None]

    def text(self, symbol: Optional[int]) -> str:
        """The text of `symbol` ("" when there is no such symbol)."""
        ends = self._ends
        if symbol is None or not 0 <= symbol < len(ends):
            return ""
        start = ends[symbol - 1] if symbol else 0
        base = self._start
        return _utf8(self._data, base + start, base + ends[symbol], f"symbol {symbol}")


class Attributes:
    """Attributes as columns, item `i` of each: `keys` (symbols), `kinds` (0 text, 1
    number, 2 boolean), `texts` (symbols, 0 unless text) and `numbers` (1 or 0 for a
    boolean, 0 for text)."""

    __slots__ = ("keys", "kinds", "texts", "numbers")

    def __init__(
        self, keys: memoryview, kinds: memoryview, texts: memoryview, numbers: memoryview
    ) -> None:
        self.keys, self.kinds, self.texts, self.numbers = keys, kinds, texts, numbers

    def find(self, key: Optional[int], start: int = 0, end: Optional[int] = None) -> int:
        """The index of the first item in `start:end` whose key is `key`, or -1."""
        keys = self.keys
        stop = len(keys) if end is None else min(end, len(keys))
        for i in range(start, stop):
            if keys[i] == key:
                return i
        return -1

    def value(self, i: int) -> Value:
        """Item `i`'s value."""
        return _value(self.kinds[i], self.texts[i], self.numbers[i])


class Conversation:
    """The conversation being routed: `id`, `entity`, `queue` (symbols), `priority`,
    `capacity_units`, `intent_family`, `intent_group`, `intent`, `representative`
    (symbols or None), `skills` (symbols) with `skill_levels` (0 to 10), `attributes` (an
    `Attributes`). Each part is read when first used."""

    __slots__ = ("_buffer", "_fields", "_skills", "_attributes")

    def __init__(self, buffer: _Buffer) -> None:
        self._buffer = buffer
        self._fields = self._skills = self._attributes = _UNREAD

    def _field(self, i: int) -> Optional[int]:
        f = self._fields
        if f is _UNREAD:
            b = self._buffer
            start, end = b.section_bytes(CONVERSATION)
            if end - start < 36:
                raise MalformedRequest(
                    f"malformed request: the conversation has {(end - start) // 4} fields, not 9"
                )
            f = _FIELDS(b.data, start)
            # The last four are options: `none` is None.
            f = self._fields = f[:5] + tuple(None if x == NONE else x for x in f[5:])
        return f[i]

    # Its id, the record entity (`case`, `email`, ...) and the queue it is in (symbols),
    # its priority (lower is served first), the capacity units it takes from who holds
    # it, its intent's family, group and intent, and the representative holding it
    # (symbols, or None).
    id = property(lambda self: self._field(0))
    entity = property(lambda self: self._field(1))
    queue = property(lambda self: self._field(2))
    priority = property(lambda self: self._field(3))
    capacity_units = property(lambda self: self._field(4))
    intent_family = property(lambda self: self._field(5))
    intent_group = property(lambda self: self._field(6))
    intent = property(lambda self: self._field(7))
    representative = property(lambda self: self._field(8))

    def _read_skills(self) -> Tuple[memoryview, memoryview]:
        s = self._skills
        if s is _UNREAD:
            section = self._buffer.section
            s = section(CONVERSATION_SKILLS, "I"), section(CONVERSATION_SKILLS + 1)
            if len(s[0]) != len(s[1]):
                raise _disagree(CONVERSATION_SKILLS, s, "conversation skill levels")
            self._skills = s
        return s

    @property
    def skills(self) -> memoryview:
        """The skills it requires (symbols)."""
        return self._read_skills()[0]

    @property
    def skill_levels(self) -> memoryview:
        """The level it requires in each of `skills`, 0 to 10."""
        return self._read_skills()[1]

    @property
    def attributes(self) -> Attributes:
        """Its attributes, as columns."""
        a = self._attributes
        if a is _UNREAD:
            b, at = self._buffer, CONVERSATION_ATTRIBUTES
            a = self._attributes = Attributes(*_attribute_columns(b, at, "conversation attributes"))
        return a

    def attribute(self, key: Optional[int]) -> Optional[Value]:
        """Its attribute whose key is the symbol `key`."""
        a = self.attributes
        i = a.find(key)
        return None if i < 0 else a.value(i)

    def skill_level(self, skill: Optional[int]) -> int:
        """The level it requires in `skill` (a symbol), 0 when it does not require it."""
        skills, levels = self._read_skills()
        for i in range(len(skills)):
            if skills[i] == skill:
                return levels[i]
        return 0


def conversation_value(request: Request, key: Optional[int]) -> Optional[Value]:
    """The conversation's attribute whose key is the symbol `key` (a `Value_*`)."""
    return None if key is None else request.conversation.attribute(key)


def conversation_text(request: Request, symbols: Symbols, key: str) -> Optional[int]:
    """The symbol of the conversation's text attribute `key`, or None when it has no
    such attribute or its value is not text."""
    value = conversation_value(request, symbols.lookup(key))
    return value.value if type(value) is Value_Text else None


def candidate_id(request: Request, k: int) -> Optional[str]:
    """The id of candidate `k` (None unless `init` declared `Needs.CANDIDATE_IDS`)."""
    return request.candidate_id(k)


def spans(ends: Iterable[int]):
    """(start, end) of each candidate's run in a column delimited by `ends`: candidate
    `k`'s items are `items[start:end]`."""
    return zip(chain((0,), ends), ends)


class SkillRuns:
    """Representatives' skills: representative `k`'s are items `ends[k-1]:ends[k]` of
    `skills` (symbols) and `levels` (0 to 10)."""

    __slots__ = ("ends", "skills", "levels")

    def __init__(self, ends: memoryview, skills: memoryview, levels: memoryview) -> None:
        self.ends, self.skills, self.levels = ends, skills, levels


class SymbolRuns:
    """A set of names per representative (queues, user groups): representative `k`'s are
    items `ends[k-1]:ends[k]` of `symbols`."""

    __slots__ = ("ends", "symbols")

    def __init__(self, ends: memoryview, symbols: memoryview) -> None:
        self.ends, self.symbols = ends, symbols


class AttributeRuns(Attributes):
    """Representatives' attributes: representative `k`'s are items `ends[k-1]:ends[k]`
    of `keys`, `kinds`, `texts` and `numbers` (as `Attributes`)."""

    __slots__ = ("ends",)

    def __init__(
        self,
        ends: memoryview,
        keys: memoryview,
        kinds: memoryview,
        texts: memoryview,
        numbers: memoryview,
    ) -> None:
        super().__init__(keys, kinds, texts, numbers)
        self.ends = ends


def _skill_runs(r: _Buffer) -> SkillRuns:
    skills, levels = columns = r.section(SKILLS + 1, "I"), r.section(SKILLS + 2)
    if len(skills) != len(levels):
        raise _disagree(SKILLS + 1, columns, "skill levels")
    return SkillRuns(_run_ends(r, SKILLS, len(skills), "skill"), skills, levels)


def _symbol_runs(r: _Buffer, at: int, what: str) -> SymbolRuns:
    symbols = r.section(at + 1, "I")
    return SymbolRuns(_run_ends(r, at, len(symbols), what), symbols)


def _attribute_runs(r: _Buffer) -> AttributeRuns:
    columns = _attribute_columns(r, ATTRIBUTES + 1, "attributes")
    return AttributeRuns(_run_ends(r, ATTRIBUTES, len(columns[0]), "attribute"), *columns)


class _Column:
    """A column of `RepColumns`: read from the request when first used, then kept in the
    instance's own `__dict__`, which shadows this (non-data) descriptor from then on, so
    later reads cost a plain attribute lookup. None unless `init` declared it (`bit`)."""

    __slots__ = ("bit", "read", "name")

    def __init__(self, bit: int, read) -> None:
        self.bit = bit
        self.read = read
        self.name = ""

    def __set_name__(self, owner, name: str) -> None:
        self.name = name

    def __get__(self, columns, owner=None):
        if columns is None:
            return self
        r = columns._buffer
        value = self.read(r) if r.needs_bits & self.bit else None
        columns.__dict__[self.name] = value
        return value


class RepColumns:
    """The representatives' raw columns, representative `k` at index `k` of each
    per-candidate one: `presence` (u8), `capacity` (u32), `free_capacity` (s32),
    `idle_minutes` (f32), as memoryviews, and `skills` (`SkillRuns`), `queues`,
    `user_groups` (`SymbolRuns`), `attributes` (`AttributeRuns`). Each is None unless
    `init` declared it in `Needs`; each is read from the request when first used and kept,
    so reading it again costs an attribute lookup."""

    presence = _Column(_PRESENCE, lambda r: r.column(PRESENCE, "B", "presence"))
    capacity = _Column(_CAPACITY, lambda r: r.column(CAPACITY, "I", "capacity"))
    free_capacity = _Column(_CAPACITY, lambda r: r.column(FREE_CAPACITY, "i", "free capacity"))
    idle_minutes = _Column(_IDLE_TIME, lambda r: r.column(IDLE_MINUTES, "f", "idle minutes"))
    skills = _Column(_SKILLS, _skill_runs)
    queues = _Column(_QUEUES, lambda r: _symbol_runs(r, QUEUES, "queue"))
    user_groups = _Column(_USER_GROUPS, lambda r: _symbol_runs(r, USER_GROUPS, "user group"))
    attributes = _Column(_ATTRIBUTES, _attribute_runs)

    def __init__(self, buffer: _Buffer) -> None:
        self._buffer = buffer


def representatives(request: Request) -> Optional["Reps"]:
    """The representative candidates with accessors, or None for a batch of queues."""
    reps = request._reps
    if reps is _UNREAD:
        reps = request._reps = None if request.is_queues else Reps(request._buffer)
    return reps


def queues(request: Request) -> Optional["QueueColumns"]:
    """The queue candidates' columns, or None for a batch of representatives."""
    q = request._queues
    if q is _UNREAD:
        q = request._queues = QueueColumns(request._buffer) if request.is_queues else None
    return q


class QueueColumns:
    """Queue candidates, as columns (memoryviews), queue `k` at index `k` of each: `ids`
    and `names` (symbols), `priorities` (lower is served first), `intent_based` (1 when
    it routes intent-based conversations, else 0)."""

    __slots__ = ("ids", "names", "priorities", "intent_based")

    def __init__(self, buffer: _Buffer) -> None:
        c = buffer.column
        self.ids = c(QUEUE_COLUMNS, "I", "queue ids")
        self.names = c(QUEUE_COLUMNS + 1, "I", "queue names")
        self.priorities = c(QUEUE_COLUMNS + 2, "I", "queue priorities")
        self.intent_based = c(QUEUE_COLUMNS + 3, "B", "queue intent-based")

    def __len__(self) -> int:
        return len(self.ids)


def _run(ends: memoryview, k: int) -> Tuple[int, int]:
    if not 0 <= k < len(ends):
        return 0, 0
    start = ends[k - 1] if k else 0
    return start, max(start, ends[k])


class Reps:
    """Accessors over the representatives' columns. Each reads a column that `init`
    must have declared in its `Needs`; an undeclared column reads as absent (None, 0 or
    no items). `columns` is a `RepColumns`, the raw columns, for loops over a whole
    column (see `spans`)."""

    __slots__ = ("columns", "count")

    def __init__(self, buffer: _Buffer) -> None:
        self.columns = RepColumns(buffer)
        self.count = buffer.count

    def presence(self, k: int) -> Optional[Presence]:
        """Representative `k`'s presence (needs PRESENCE)."""
        p = self.columns.presence
        return Presence(min(p[k], 4)) if p is not None and 0 <= k < len(p) else None

    def free_capacity(self, k: int) -> Optional[int]:
        """Representative `k`'s free capacity (needs CAPACITY)."""
        c = self.columns.free_capacity
        return c[k] if c is not None and 0 <= k < len(c) else None

    def idle_minutes(self, k: int) -> Optional[float]:
        """Minutes since representative `k` last got a conversation (needs IDLE_TIME)."""
        m = self.columns.idle_minutes
        return m[k] if m is not None and 0 <= k < len(m) else None

    def skills(self, k: int) -> List[Tuple[int, int]]:
        """Representative `k`'s skills as (skill symbol, level) (needs SKILLS)."""
        runs = self.columns.skills
        if runs is None:
            return []
        start, end = _run(runs.ends, k)
        return list(zip(runs.skills[start:end], runs.levels[start:end]))

    def skill_level(self, k: int, skill: Optional[int]) -> int:
        """Representative `k`'s level in `skill` (a symbol), 0 without it (needs SKILLS)."""
        runs = self.columns.skills
        if runs is None or skill is None:
            return 0
        start, end = _run(runs.ends, k)
        skills = runs.skills
        for i in range(start, end):
            if skills[i] == skill:
                return runs.levels[i]
        return 0

    def queues(self, k: int) -> List[int]:
        """The queues (symbols) representative `k` is a member of (needs QUEUES)."""
        return _symbols(self.columns.queues, k)

    def user_groups(self, k: int) -> List[int]:
        """The user groups (symbols) of representative `k` (needs USER_GROUPS)."""
        return _symbols(self.columns.user_groups, k)

    def attribute(self, k: int, key: Optional[int]) -> Optional[Value]:
        """Representative `k`'s attribute whose key is the symbol `key` (needs ATTRIBUTES)."""
        runs = self.columns.attributes
        if runs is None or key is None:
            return None
        start, end = _run(runs.ends, k)
        i = runs.find(key, start, end)
        return None if i < 0 else runs.value(i)


def _symbols(runs: Optional[SymbolRuns], k: int) -> List[int]:
    if runs is None:
        return []
    start, end = _run(runs.ends, k)
    return runs.symbols[start:end].tolist()


def all_eligible() -> Verdicts:
    """Everyone stays eligible, the order unchanged."""
    return Verdicts([], [], [], [])


class VerdictsBuilder:
    """Builds a matcher's answer on `count` candidates: exclusions (each reason text
    crosses once) and score adjustments."""

    __slots__ = ("count", "_excluded", "_reasons", "_index", "_scores")

    def __init__(self, count: int) -> None:
        self.count = count
        self._excluded: Dict[int, int] = {}  # candidate -> its first reason
        self._reasons: List[str] = []
        self._index: Dict[str, int] = {}
        self._scores: Optional[List[float]] = None

    def _reason(self, reason: str) -> int:
        r = self._index.get(reason)
        if r is None:
            r = self._index[reason] = len(self._reasons)
            self._reasons.append(reason)
        return r

    def exclude(self, k: int, reason: str) -> None:
        """Excludes candidate `k`, saying why. Any order; excluding one twice keeps the
        first reason."""
        r = self._reason(reason)
        if k not in self._excluded:
            self._excluded[k] = r

    def exclude_all(self, ks: Iterable[int], reason: str) -> None:
        """Excludes each of the candidates `ks` for the same reason (as `exclude` on each,
        but with no Python code run per candidate: collect them in a list in the loop,
        then exclude them all at once)."""
        if not isinstance(ks, (list, tuple, range)):
            ks = list(ks)
        if not ks:
            return
        excluded = dict.fromkeys(ks, self._reason(reason))
        excluded.update(self._excluded)  # those already excluded keep their reason
        self._excluded = excluded

    def add_score(self, k: int, points: float) -> None:
        """Adds `points` to candidate `k`'s score."""
        if self._scores is None:
            self._scores = [0.0] * self.count
        if 0 <= k < self.count:
            self._scores[k] += points

    def set_scores(self, scores: List[float]) -> None:
        """Sets every candidate's score adjustment at once (one per candidate)."""
        if len(scores) != self.count:
            raise ValueError(f"{len(scores)} scores for {self.count} candidates")
        self._scores = scores

    def finish(self) -> Verdicts:
        """The answer, exclusions in increasing order of candidate, each once, as the
        host requires."""
        excluded = sorted(self._excluded)
        return Verdicts(
            excluded,
            list(map(self._excluded.__getitem__, excluded)),
            self._reasons,
            self._scores if self._scores is not None else [],
        )


_MISSING = object()


class Config:
    """A rule's `config` table, parsed from the JSON `init` receives. Reading a field
    checks its type; `finish` refuses fields nobody read (a misspelt option). Every
    problem raises `Err` with a message, which refuses the config: the rule then fails
    validation with it (an uncaught exception would trap instead)."""

    def __init__(self, text: str) -> None:
        problem = None
        try:
            value = json.loads(text)
        except ValueError as e:
            problem = str(e)
        if problem is not None:
            raise Err(f"invalid config: {problem}")
        if not isinstance(value, dict):
            raise Err(f"invalid config: expected a table, got {_kind(value)}")
        self._value: Dict[str, Any] = value
        self._read: set = set()

    def _get(self, key: str, default: Any) -> Any:
        self._read.add(key)
        value = self._value.get(key, _MISSING)
        if value is _MISSING:
            if default is _MISSING:
                raise Err(f"invalid config: missing field `{key}`")
            return default
        return value

    def text(self, key: str, default: Any = _MISSING) -> str:
        value = self._get(key, default)
        if not isinstance(value, str):
            raise Err(f"invalid config: `{key}` must be a string, got {_kind(value)}")
        return value

    def number(self, key: str, default: Any = _MISSING) -> float:
        value = self._get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
            raise Err(f"invalid config: `{key}` must be a number, got {_kind(value)}")
        return float(value)

    def flag(self, key: str, default: Any = _MISSING) -> bool:
        value = self._get(key, default)
        if not isinstance(value, bool):
            raise Err(f"invalid config: `{key}` must be true or false, got {_kind(value)}")
        return value

    def texts(self, key: str, default: Any = _MISSING) -> List[str]:
        value = self._get(key, default)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise Err(f"invalid config: `{key}` must be a list of strings, got {_kind(value)}")
        return value

    def table(self, key: str, default: Any = _MISSING) -> Dict[str, Any]:
        value = self._get(key, default)
        if not isinstance(value, dict):
            raise Err(f"invalid config: `{key}` must be a table, got {_kind(value)}")
        return value

    def finish(self) -> None:
        """Refuses the fields that were never read."""
        unknown = sorted(set(self._value) - self._read)
        if unknown:
            expected = ", ".join(f"`{k}`" for k in sorted(self._read))
            raise Err(f"invalid config: unknown field `{unknown[0]}`, expected one of {expected}")


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, (int, float)):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the string {json.dumps(value)}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a table"
    return "null"


# The heap as the build snapshots it (the interpreter, the standard library, the
# bindings, this module) lives as long as the instance: frozen, the cyclic garbage
# collector skips it. Without this, a collection every few calls scans it all, 0.7 to
# 0.9 million instructions (measured with site_affinity.py), more than a whole call on
# a small batch and most of a call's peak fuel.
gc.collect()
gc.freeze()
