"""Stream records out of .json / .jsonl / .csv / .parquet files with bounded memory.

JSON arrays are parsed one element at a time (``JSONDecoder.raw_decode`` over a growing text
buffer), JSON Lines one line at a time, so validating a 1 GB file never holds it in memory.
The reader also mirrors the quirks of the loader LLaMA-Factory uses (``datasets``' JSON builder:
pyarrow for JSON Lines, pandas for arrays), where they change what a record looks like:
blank lines are skipped, NaN in an array becomes null, a duplicated key in JSON Lines is fatal.

Speed: records are parsed by the C scanner with no per-object hook. Duplicate keys are found
with a proof instead: every key token in the source text is a string followed by ``:``, so the
number of ``":`` (plus colons right after whitespace) bounds the key tokens from above, and the
parsed tree holds exactly one dict entry per key token unless some object repeats a key. When
the bound equals the tree's key count no object can hold a duplicate; only the rare records
where it does not (colons after quotes inside strings, embedded JSON) are parsed again with
the pair-collecting hook that names the key. Every count is a C ``count``; only a ``\\":`` in
the text is looked at in Python (``_key_colons``).
"""

from __future__ import annotations

import codecs
import csv
import json
import math
import os
import re
from collections.abc import Callable, Generator, Iterator
from json.scanner import make_scanner
from pathlib import Path
from typing import Any

try:  # several times faster than the stdlib on JSON Lines; the stdlib decides whatever it rejects
    from orjson import loads as _orjson_loads
except ImportError:  # pragma: no cover - a dependency, but keep working without it
    _orjson_loads = None

Progress = Callable[[int, int], None]
CHUNK = 8 << 20
_WS = re.compile(r"[ \t\n\r]*")
_JSON_WS = " \t\n\r"
_WS_CHARS = frozenset(_JSON_WS)
_EOL = ("\n", "\r\n")
# llamafactory/extras/constants.py FILEEXT2TYPE (0.9.x): extension (case-sensitive, no dot) -> loader.
FILEEXT2TYPE = {"arrow": "arrow", "csv": "csv", "json": "json", "jsonl": "json", "parquet": "parquet",
                "txt": "text"}
# The ones a local SFT / DPO / KTO file can be, and that this reader streams.
FILE_TYPES = {f".{ext}": kind for ext, kind in FILEEXT2TYPE.items() if kind in ("json", "csv", "parquet")}


class _Doubt(Exception):
    """A parsed value the fast path will not vouch for; the careful path decides."""


# orjson turns integers beyond 64 bits into floats (the stdlib keeps them exact): a float this
# big may be such an integer, so records holding one go through the stdlib.
_BIG = 9.2e18


def _walk(d: dict) -> int:
    """(object entries << 32) + string values, over ``d`` and everything it holds."""
    n = len(d) << 32
    for v in d.values():
        t = type(v)
        if t is str:
            n += 1
        elif t is dict:
            n += _walk(v)
        elif t is list:
            n += _walk_list(v)
        elif t is float and not -_BIG < v < _BIG:
            raise _Doubt
    return n


def _walk_list(items: list) -> int:
    n = 0
    for v in items:
        t = type(v)
        if t is str:
            n += 1
        elif t is dict:
            n += _walk(v)
        elif t is list:
            n += _walk_list(v)
        elif t is float and not -_BIG < v < _BIG:
            raise _Doubt
    return n


def _tree_counts(value: Any) -> int:
    t = type(value)
    if t is dict:
        return _walk(value)
    if t is list:
        return _walk_list(value)
    if t is str:
        return 1
    if t is float and not -_BIG < value < _BIG:
        raise _Doubt
    return 0


_KEY_COLON_B = (b'":', b" :", b"\t:", b"\r:", b"\n:")
_KEY_COLON_S = ('":', " :", "\t:", "\r:", "\n:")


def _no_duplicate_keys(value: Any, text: bytes | str, start: int = 0, end: int | None = None) -> bool:
    """True only when ``value``, parsed from ``text[start:end]``, provably has no repeated key.

    Sound, not complete: False means "look closer", never "there is one". Each key token is a
    closing quote, optional JSON whitespace, then a colon. A colon right after a quote or
    whitespace, unless that quote is escaped, may be a key separator; any other colon sits
    inside a string. So the count of such colons is at least the number of key tokens, which
    is at least the number of parsed entries, with equality exactly when no object repeats a
    key. UTF-8 multi-byte sequences hold no ASCII bytes, so bytes count like characters.
    Two cheaper counts are tried first: all colons (text without colons in its strings) and
    all quote characters (text without escaped quotes); see the comments below.
    """
    try:
        counts = _tree_counts(value)
    except (RecursionError, _Doubt):  # absurdly deep, or a number only the stdlib reads exactly
        return False
    keys = counts >> 32
    if end is None:
        end = len(text)
    if isinstance(text, bytes):
        colon, quote, esc_quote, esc_backslash = b":", b'"', b'\\"', b"\\\\"
    else:
        colon, quote, esc_quote, esc_backslash = ":", '"', '\\"', "\\\\"
    if text.count(colon, start, end) == keys:  # every colon is a key separator (the usual case)
        return True
    # Every string token (key or value) has two quote characters, and the tree holds one entry
    # per key token and one str per string value token, minus what duplicates dropped. So equal
    # counts prove no duplicate; escaped quotes only make the text side larger (no proof).
    tokens = 2 * (keys + (counts & 0xFFFFFFFF))
    quotes = text.count(quote, start, end)
    if quotes == tokens:
        return True
    # The same with the escaped quotes left out: with no "\\" in the text, each '\"' is one (embedded JSON).
    if quotes > tokens and text.count(esc_quote, start, end) == quotes - tokens \
            and text.count(esc_backslash, start, end) == 0:
        return True
    return _key_colons(text, start, end) == keys


def _key_colons(text: bytes | str, start: int, end: int) -> int:
    """The colons in ``text[start:end]`` that may be key separators: each right after whitespace or a quote that
    is not escaped (an odd run of backslashes before it). Counted in C, pattern by pattern (a colon's one
    preceding character decides it); only the rare ``\\":`` are looked at one by one."""
    if isinstance(text, bytes):
        pairs, esc, backslash = _KEY_COLON_B, b'\\":', 92
    else:
        pairs, esc, backslash = _KEY_COLON_S, '\\":', "\\"
    count = text.count
    bound = 0
    for pair in pairs:
        bound += count(pair, start, end)
    at = text.find(esc, start, end)
    while at >= 0:
        i = at
        while i > start and text[i - 1] == backslash:
            i -= 1
        if (at - i) % 2 == 0:  # with the backslash at ``at``: an odd run, so the quote is escaped
            bound -= 1
        at = text.find(esc, at + 1, end)
    return bound


def _comma_before(text: str, pos: int) -> bool:
    """Whether the JSON syntax error at ``pos`` is a trailing comma: a ',' (then only whitespace) right before
    the '}' or ']' found there. JSON allows none; json says "Expecting value" / "Expecting property name"."""
    if text[pos:pos + 1] not in ("}", "]"):
        return False
    i = pos - 1
    while i >= 0 and text[i] in _WS_CHARS:
        i -= 1
    return i >= 0 and text[i] == ","


TRAILING_COMMA_FIX = "remove the comma after the last item (JSON allows no trailing comma)"


class RecordLines:
    """A text file's lines for csv.reader, keeping those it took since ``lines`` was last reset: the lines of the
    record it is reading (csv.reader takes one line at a time, never more than the record needs)."""

    __slots__ = ("_it", "lines")

    def __init__(self, fh: Any) -> None:
        self._it = iter(fh)
        self.lines: list[str] = []

    def __iter__(self) -> RecordLines:
        return self

    def __next__(self) -> str:
        line = next(self._it)
        self.lines.append(line)
        return line


def ends_in_open_quote(lines: list[str]) -> bool:
    """Whether the CSV record made of ``lines`` (the file's last) ends inside a quoted cell: Python's csv then
    returns the cell as read (in its default, non-strict mode), where pandas fails with "EOF inside string"."""
    if not lines or '"' not in lines[0] and len(lines) == 1:
        return False
    try:
        for _ in csv.reader(lines, strict=True):
            pass
    except csv.Error as exc:
        return "unexpected end of data" in str(exc)
    return False


class FileLevelError(Exception):
    """The file cannot be read past this point (or at all)."""

    def __init__(self, message: str, fix: str, record: int | None = None, kind: str = "file", field: str = ""):
        super().__init__(message)
        self.message, self.fix, self.record, self.kind, self.field = message, fix, record, kind, field


class RecordParseError:
    """A record that could not be parsed; reading goes on (JSON Lines only)."""

    __slots__ = ("message", "fix", "kind")

    def __init__(self, message: str, fix: str, kind: str = "json"):
        self.message, self.fix, self.kind = message, fix, kind


class RecordReader:
    """Iterate ``(index, record_or_RecordParseError)``; ``notes`` collects per-record warnings."""

    def __init__(self, path: str | os.PathLike[str], progress: Progress | None = None,
                 byte_range: tuple[int, int] | None = None,
                 array_range: tuple[int, int, bool] | None = None):
        self.path = Path(path)
        self.progress = progress
        self.total = self.path.stat().st_size
        # JSON Lines only: read the lines in [start, stop) (both at line starts), numbering
        # records and lines from 0 and 1 within the range (parallel validation).
        self.byte_range = byte_range
        # JSON arrays only: (start, stop, last). Parse the records from ``start`` (the '{' of a
        # record, or 0) until the next one would start at/after ``stop``; unless ``last``, the
        # record there must start exactly at ``stop`` or ``split_ok`` turns False (a candidate
        # split inside a string: the caller then reads the file sequentially).
        self.array_range = array_range
        self.split_ok = True
        self.lines_read = 0
        self.pos = 0  # JSON Lines: the byte offset of the line of the record last yielded
        self.layout = "?"  # "array" | "lines" | "csv" | "parquet"
        self.dup_key: str | None = None
        self.nan_seen = False
        self.lines_mode_nan_is_float = True
        # CSV only: (record, column, message, fix) of the first thing that stops the loader's whole load,
        # and where misread cells are told ((record, column, message, fix, kind), e.g. _Collector.warn).
        self.load_issue: tuple[int, str, str, str] | None = None
        self.on_note: Callable[[int | None, str, str, str, str], None] | None = None

    # -- hooks shared by both JSON modes (called by the C scanner per object) -------------
    def _pairs(self, pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        d = dict(pairs)
        if len(d) != len(pairs) and self.dup_key is None:
            seen: set[str] = set()
            for k, _ in pairs:
                if k in seen:
                    self.dup_key = k
                    break
                seen.add(k)
        return d

    def _constant(self, name: str) -> Any:
        self.nan_seen = True
        # pandas (arrays) turns NaN into a missing value; pyarrow (lines) keeps a float.
        return math.nan if self.layout == "lines" else None

    def __iter__(self) -> Iterator[tuple[int, Any]]:
        ext = self.path.suffix.lower()
        if ext not in FILE_TYPES:
            raise FileLevelError(f"unsupported file type {ext or '(none)'!r}",
                                 "use .json, .jsonl, .csv or .parquet (what LLaMA-Factory loads from a local file)")
        if ext == ".csv":
            return self._csv()
        if ext == ".parquet":
            return self._parquet()
        return self._json()

    def _report(self, done: int) -> None:
        if self.progress is not None:
            self.progress(min(done, self.total), self.total)

    # -- JSON ------------------------------------------------------------------------------
    def _json(self) -> Iterator[tuple[int, Any]]:
        with open(self.path, "rb") as f:
            head = f.read(4096)
        text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
        if not text:
            raise FileLevelError("the file is empty", "put one record per line (JSON Lines) or a JSON array of "
                                 "records in it", kind="empty")
        if self.array_range is not None or (text[:1] == b"[" and self.byte_range is None):
            self.layout = "array"
            return self._json_array()
        self.layout = "lines"
        return self._json_lines()

    def _json_lines(self) -> Iterator[tuple[int, Any]]:
        # Fast path: the C scanner without hooks, then the duplicate-key proof. Anything it
        # cannot vouch for (bad JSON, odd whitespace, a possible duplicate) goes through the
        # careful decode below, which produces the same records and the exact error text.
        scan = make_scanner(json.JSONDecoder(parse_constant=self._constant))
        careful = json.JSONDecoder(object_pairs_hook=self._pairs, parse_constant=self._constant).decode
        no_dup = _no_duplicate_keys
        idx = 0
        done = 0
        next_report = 1 << 20
        fast_loads = _orjson_loads
        start, stop = self.byte_range or (0, self.total)
        lineno = 0
        with open(self.path, "rb") as f:
            f.seek(start)
            for line in f:
                if done >= stop - start:
                    break
                lineno += 1
                self.pos = start + done
                done += len(line)
                if done >= next_report:
                    self._report(done)
                    next_report = done + (4 << 20)
                # orjson first: it accepts strictly less than the stdlib (no NaN/Infinity, no lone
                # surrogate escapes, no number overflowing a double), parses alike what it does
                # accept, and integers beyond 64 bits, which it reads as floats, fail the proof.
                if fast_loads is not None:
                    try:
                        rec = fast_loads(line)
                    except Exception:  # noqa: BLE001 - not for orjson: the stdlib paths below decide
                        pass
                    else:
                        if no_dup(rec, line):
                            yield idx, rec
                            idx += 1
                            continue
                try:
                    text = line.decode("utf-8")
                    rec, end = scan(text, 0)
                    ok = (end == len(text) or text[end:] in _EOL or not text[end:].strip(_JSON_WS)) \
                        and no_dup(rec, line)
                except Exception:  # noqa: BLE001 - any doubt: the careful path below decides
                    ok = False
                if ok:
                    yield idx, rec
                    idx += 1
                    continue
                if not line.strip():
                    continue  # pyarrow skips blank lines; they are not records
                self.dup_key = None
                try:
                    rec = careful(line.decode("utf-8"))
                except UnicodeDecodeError as exc:
                    yield idx, RecordParseError(f"line {lineno} is not valid UTF-8 (byte {exc.start} of the line)",
                                                "re-save the file as UTF-8", kind="encoding")
                except json.JSONDecodeError as exc:
                    if _comma_before(exc.doc, exc.pos):
                        yield idx, RecordParseError(f"line {lineno} has a trailing comma before "
                                                    f"'{exc.doc[exc.pos]}' at column {exc.colno}", TRAILING_COMMA_FIX)
                        idx += 1
                        continue
                    cut = " (the line is cut short: is the file truncated?)" if exc.pos >= len(line.rstrip()) - 1 \
                        else ""
                    yield idx, RecordParseError(f"line {lineno} is not valid JSON: {exc.msg} at column "
                                                f"{exc.colno}{cut}", "write one complete JSON object per line")
                else:
                    if self.dup_key is not None:
                        yield idx, RecordParseError(
                            f"line {lineno} has the key {self.dup_key!r} twice (LLaMA-Factory's JSON Lines loader "
                            "fails on the whole file)", "keep one of the two values", kind="duplicate_key")
                        self.dup_key = None
                    else:
                        yield idx, rec
                idx += 1
        self.lines_read = lineno
        self._report(stop - start)

    def _json_array(self) -> Iterator[tuple[int, Any]]:
        dec = json.JSONDecoder(object_pairs_hook=self._pairs, parse_constant=self._constant)
        raw = dec.raw_decode
        scan = make_scanner(json.JSONDecoder(parse_constant=self._constant))
        no_dup = _no_duplicate_keys
        ws = _WS.match
        udec = codecs.getincrementaldecoder("utf-8")("strict")
        f = open(self.path, "rb")  # noqa: SIM115 - closed in the finally below; a generator spans the with
        start, stop, last = self.array_range or (0, self.total, True)
        f.seek(start)
        stop_rel = stop - start
        stop_char = -1  # the character index of byte ``stop`` (counting from ``start``), once read
        trimmed = 0  # characters dropped from the front of buf
        trimmed_lines = 0  # the line breaks among them
        read_bytes = 0
        eof = False
        buf = ""

        def more(n: int = CHUNK) -> bool:
            nonlocal buf, eof, read_bytes, stop_char
            if eof:
                return False
            chunk = f.read(max(n, CHUNK))
            before = read_bytes
            read_bytes += len(chunk)
            eof = not chunk
            try:
                if not last and stop_char < 0 and before <= stop_rel < read_bytes:
                    # byte ``stop`` is a '{' (ASCII): a character boundary, so this count is exact
                    pending = udec.getstate()[0]
                    stop_char = trimmed + len(buf) + len((pending + chunk[:stop_rel - before]).decode("utf-8"))
                buf += udec.decode(chunk, final=eof)
            except UnicodeDecodeError as exc:
                raise FileLevelError(f"not valid UTF-8 near byte {start + before + exc.start:,}",
                                     "re-save the file as UTF-8", record=idx, kind="encoding") from None
            self._report(read_bytes)
            return not eof or bool(chunk)

        def line_at(pos: int) -> int:
            """The file's line number (from 1) of ``buf[pos]``; an error path only (a range counts its start)."""
            before = 0
            if start:
                with open(self.path, "rb") as head:
                    for block in iter(lambda: head.read(min(CHUNK, start - head.tell())), b""):
                        before += block.count(b"\n")
            return before + trimmed_lines + buf.count("\n", 0, pos) + 1

        idx = 0
        try:
            more()
            if start == 0:
                if buf.startswith("\ufeff"):
                    buf = buf[1:]
                    trimmed = 1
                pos = ws(buf, 0).end() + 1  # past "["
            else:
                pos = 0  # at the '{' of a record (a candidate: the chunk before verifies it)
            while True:
                if buf[pos:pos + 1] in _WS_CHARS:  # the regex only where there is whitespace
                    pos = ws(buf, pos).end()
                while pos >= len(buf):
                    if not more():
                        raise FileLevelError(f"the JSON array ends early, after {idx:,} records (is the file "
                                             "truncated?)", "finish the array with ']' or re-export the file",
                                             record=idx, kind="truncated")
                    pos = ws(buf, pos).end()
                ch = buf[pos]
                if not last and ch == "]":
                    self.split_ok = False  # the array ended before ``stop``: it was no record start
                    break
                if ch == "]":
                    pos = ws(buf, pos + 1).end()
                    while pos >= len(buf) and more():
                        pos = ws(buf, pos).end()
                    if pos < len(buf):
                        raise FileLevelError("there is data after the closing ']' of the JSON array",
                                             "keep one top-level array per file", record=idx, kind="json")
                    break
                if idx > 0:
                    if ch != ",":
                        raise FileLevelError(f"expected ',' or ']' after record {idx - 1:,} on line {line_at(pos):,}",
                                             "separate records with commas", record=idx, kind="json")
                    pos += 1
                    if buf[pos:pos + 1] in _WS_CHARS:
                        pos = ws(buf, pos).end()
                    while pos >= len(buf) and more():
                        pos = ws(buf, pos).end()
                    if buf[pos:pos + 1] == "]":
                        raise FileLevelError(f"a trailing comma after the last record ({idx - 1:,}) before the "
                                             f"closing ']' on line {line_at(pos):,}",
                                             "remove the comma after the last record (JSON allows no trailing "
                                             "comma)", record=idx - 1, kind="json")
                    if stop_char >= 0:
                        while pos >= len(buf) and more():
                            pos = ws(buf, pos).end()
                        if trimmed + pos >= stop_char:
                            # the next record starts at/after ``stop``: the next chunk's business
                            self.split_ok = trimmed + pos == stop_char
                            break
                self.dup_key = None
                # Fast path (see the module docstring); on any doubt the careful loop below
                # re-reads the record with the hook, asks for more text or names the error.
                try:
                    rec, end = scan(buf, pos)
                    fast = (end < len(buf) or eof) and no_dup(rec, buf, pos, end)
                except Exception:  # noqa: BLE001
                    fast = False
                while not fast:
                    try:
                        rec, end = raw(buf, pos)
                        if end >= len(buf) and not eof:
                            raise json.JSONDecodeError("incomplete", buf, len(buf))
                        break
                    except json.JSONDecodeError as exc:
                        need_more = exc.pos >= len(buf) - 1 or exc.msg.startswith("Unterminated string")
                        if need_more and more(len(buf) - pos):
                            continue
                        if need_more:
                            raise FileLevelError(f"the JSON array ends inside record {idx:,} (is the file "
                                                 "truncated?)", "re-export the file", record=idx,
                                                 kind="truncated") from None
                        if _comma_before(buf, exc.pos):
                            raise FileLevelError(f"record {idx:,} has a trailing comma before '{buf[exc.pos]}' on "
                                                 f"line {line_at(exc.pos):,}", TRAILING_COMMA_FIX, record=idx,
                                                 kind="json") from None
                        raise FileLevelError(f"not valid JSON in record {idx:,}: {exc.msg} on line "
                                             f"{line_at(exc.pos):,}", "fix the JSON syntax there",
                                             record=idx, kind="json") from None
                yield idx, rec
                if self.dup_key is not None:
                    self.dup_key = None
                idx += 1
                pos = end
                if pos > (1 << 20) and pos > len(buf) // 2:
                    trimmed_lines += buf.count("\n", 0, pos)
                    buf = buf[pos:]
                    trimmed += pos
                    pos = 0
        finally:
            f.close()

    # -- CSV / parquet ------------------------------------------------------------------------
    def _csv(self) -> Iterator[tuple[int, Any]]:
        # datasets reads CSV with pandas in chunks of rows, each typed on its own and cast to the first
        # one's types (csvchunks.py): one pass, a chunk of rows held at a time.
        from minicpm_tui.core.datasets import csvchunks

        self.layout = "csv"
        chunk = csvchunks.CSV_CHUNK
        try:
            with open(self.path, newline="", encoding="utf-8") as fh:
                source = RecordLines(fh)
                reader = csv.reader(source)
                header = next(reader, None)
                if not header:
                    raise FileLevelError("the CSV file is empty", "put a header row and one record per row",
                                         kind="empty")
                names = csvchunks.dedup_header(header)
                if names != header and self.on_note is not None:
                    for name, orig in zip(names, header, strict=True):
                        if name != orig:
                            self.on_note(None, orig, f"repeats a column name: LLaMA-Factory's CSV loader (pandas) "
                                         f"calls this column {name!r} and reads {orig!r} from the first one",
                                         "give every column its own name", "csv_duplicate_column")
                header = names
                first: list[str] | None = None
                rows: list[list[str]] = []
                idx = 0
                last: list[str] = []
                width = len(header)  # the fields pandas reads per row
                shift = 0  # leading fields pandas makes the index (a first row longer than the header)
                for row in reader:
                    last, source.lines = source.lines, []  # this row's own lines
                    if not row or len(row) == 1 and not row[0].strip():
                        continue  # pandas skips blank lines (skip_blank_lines): they are no record
                    n = idx + len(rows)
                    if len(row) > width:
                        if n == 0:
                            shift, width = len(row) - width, len(row)
                            self._csv_index_note(header, row, shift, reader.line_num)
                            header = [*header, *(f"__index_level_{i}__" for i in range(shift))]
                        elif n % chunk == 0:
                            self._csv_cut_note(n, row, width, reader.line_num)
                            row = row[:width]
                        elif self.load_issue is None:
                            self.load_issue = (n, "", f"has {len(row)} fields but the {'first row' if shift else 'header'}"
                                               f" has {width}: LLaMA-Factory's CSV loader (pandas) stops the whole load "
                                               "on it (\"Error tokenizing data\")", "quote the cells that hold a comma, "
                                               "or remove the extra ones")
                    if shift:  # the index fields go last, as Arrow stores pandas' index
                        row = row + [""] * (width - len(row))
                        row = row[shift:] + row[:shift]
                    rows.append(row)
                    if len(rows) == chunk:
                        first = yield from self._csv_chunk(header, rows, idx, first)
                        idx += len(rows)
                        rows = []
                if rows and self.load_issue is None and ends_in_open_quote(last):
                    # Python's csv gives back what it read; pandas' C parser stops the whole load.
                    row, at = rows[-1], len(rows[-1]) - 1
                    self.load_issue = (idx + len(rows) - 1, header[at] if at < len(header) else "",
                                       "opens a quoted cell that is never closed (it runs to the end of the file): "
                                       "LLaMA-Factory's CSV loader (pandas) stops the whole load on it (\"EOF inside "
                                       "string\")", "close the quote; a quote inside a quoted cell is written twice "
                                       "(\"\")")
                if rows:
                    yield from self._csv_chunk(header, rows, idx, first)
        except UnicodeDecodeError as exc:
            raise FileLevelError(f"the CSV file is not valid UTF-8 (byte {exc.start:,})",
                                 "re-save it as UTF-8", kind="encoding") from None
        self._report(self.total)

    def _csv_index_note(self, header: list[str], row: list[str], shift: int, line: int) -> None:
        """The first data row is longer than the header: pandas (read_csv's default index_col=None) makes its
        leading fields the index of every row, Arrow keeps it as a column, and the header names the fields
        after it, so every column is read ``shift`` fields to the right."""
        if self.on_note is None:
            return
        extra = "the first field" if shift == 1 else f"the first {shift} fields"
        index = ", ".join(repr(f"__index_level_{i}__") for i in range(shift))
        cells = ", ".join(f"{name!r} reads {row[shift + i][:20]!r}" for i, name in enumerate(header[:3]))
        self.on_note(0, "", f"has {len(row)} fields (line {line}) but the header has {len(header)}: LLaMA-Factory's "
                     f"CSV loader (pandas) then takes {extra} of every row as its index (column"
                     f"{'s' * (shift > 1)} {index}) and reads each header name {shift} field{'s' * (shift > 1)} to the right: "
                     f"here {cells}", "remove the extra field from that row (a trailing comma is one) or quote the "
                     "cell that holds a comma; or give the extra column a name in the header", "csv_index")

    def _csv_cut_note(self, n: int, row: list[str], width: int, line: int) -> None:
        if self.on_note is not None:
            self.on_note(n, "", f"has {len(row)} fields (line {line}) but the rows before it have {width}: it is the "
                         "first row of one of the chunks LLaMA-Factory's CSV loader (pandas) reads, and there pandas "
                         f"drops the last {len(row) - width} without a word (anywhere else it stops the load)",
                         "quote the cells that hold a comma, or remove the extra ones", "csv_extra_fields")

    def _csv_chunk(self, header: list[str], rows: list[list[str]], base: int,
                   first: list[str] | None) -> Generator[tuple[int, Any], None, list[str]]:
        """Yield one chunk's records typed as pandas types them, cast to the first chunk's ``first`` column
        types (the failure and misreads noted); return the first chunk's types."""
        from minicpm_tui.core.datasets import csvchunks

        width = len(header)
        cols = [[r[i] if i < len(r) else "" for r in rows] for i in range(width)]
        types = [csvchunks.column_type(c) for c in cols]
        if first is None:
            first = types
        na, note = csvchunks.NA_VALUES, self.on_note
        casts = [(i, t, first[i]) for i, t in enumerate(types) if t != first[i] and t != "empty"]
        values = [[None if c in na else csvchunks.cell_value(c, t) for c in col] if t != "string"
                  else [None if c in na else c for c in col] for col, t in zip(cols, types, strict=True)]
        for i, src, dst in casts:
            col, vals = cols[i], values[i]
            for j, v in enumerate(vals):
                if v is None:
                    continue
                out, ok = csvchunks.cast(v, src, dst)
                if not ok:
                    vals[j] = None
                    if self.load_issue is None:
                        msg, fix = csvchunks.cast_problem(col[j], header[i], src, dst)
                        self.load_issue = (base + j, header[i], msg, fix)
                    continue
                vals[j] = out
                if dst == "string" and out != col[j] and note is not None:
                    note(base + j, header[i], f"is {col[j][:40]!r} in the file, but LLaMA-Factory's CSV loader "
                         f"(pandas) reads it as the {csvchunks.describe(src)} it looks like in this chunk of "
                         f"{csvchunks.CSV_CHUNK:,} rows and turns it back into the text {out!r} (the column is text in "
                         "the first chunk)", "convert the file to JSON Lines (minicpm-tui convert keeps every cell "
                         "text), or move rows whose value is not a number next to it", "csv_misread")
        if note is not None:
            for i, col in enumerate(cols):
                for j, c in enumerate(col):
                    if c and c in na:
                        note(base + j, header[i], f"is the text {c!r}, which LLaMA-Factory's CSV loader (pandas) "
                             "reads as a missing value (null)", "reword it, or convert the file to JSON Lines "
                             "(minicpm-tui convert keeps every cell text)", "csv_na")
        names = header
        for j in range(len(rows)):
            yield base + j, {name: values[i][j] for i, name in enumerate(names)}
        return first

    def _parquet(self) -> Iterator[tuple[int, Any]]:
        self.layout = "parquet"
        try:
            import pyarrow.parquet as pq  # light; never the training stack
        except ImportError:  # pragma: no cover - pyarrow comes with datasets
            raise FileLevelError("reading .parquet needs pyarrow", "pip install pyarrow") from None
        try:
            pf = pq.ParquetFile(self.path)
        except Exception as exc:  # pyarrow raises several types for a bad file
            raise FileLevelError(f"not a readable parquet file ({type(exc).__name__}: {exc})",
                                 "re-export it", kind="file") from None
        idx = 0
        for batch in pf.iter_batches(batch_size=4096):
            for rec in batch.to_pylist():
                yield idx, rec
                idx += 1
        self._report(self.total)
