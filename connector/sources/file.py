"""The `file` source: a JSON list, newline-delimited JSON, or CSV on disk. Always a complete fetch.

The file is read as a stream: `fetch` opens it and reads up to its first record (so a file that
cannot be used at all fails there), and the records after it are read and parsed as the pass takes
them (`connector.sources.StreamedItems`), a few hundred KiB at a time, so memory follows the
mapped state, not the file. A JSON list is parsed one element at a time with the standard library's
decoder (`raw_decode`), with json.loads' own messages, line and column counted over the whole file.

Records that cannot be parsed (an ndjson line that is not JSON, a CSV row with the wrong number of
fields) become `BrokenItem`s in their place; the rest still arrive. A broken record carries the
top-level fields that can still be read with certainty (`BrokenItem.readable`), so the mapper can
file it under its remote id. A file that cannot be used at all (missing, unreadable, too large, not
UTF-8, not a JSON list, not valid JSON) is a `SourceError` naming the path: from `fetch` when that
shows before the first record, else while the records are read (the pass then stops before it
plans anything: `source_error`, nothing sent).
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import json
import os
import re
from collections.abc import Iterator
from typing import IO, Any

from connector.config import FileSourceConfig
from connector.errors import SourceError
from connector.sources import BrokenItem, FetchResult, json_problem, json_type

CHUNK = 256 * 1024  # bytes read at a time
_END = object()
_JSON_SPACE = " \t\n\r"


class FileSource:
    kind = "file"

    def __init__(self, config: FileSourceConfig) -> None:
        self.config = config

    def close(self) -> None:
        pass

    def fetch(self, since: str | None = None) -> FetchResult:
        parse = {"json": self._json, "ndjson": self._ndjson, "csv": self._csv}[self.config.resolved_format]
        records = parse(self._text())
        first = next(records, _END)  # a file that cannot be used at all fails here, before any record
        return FetchResult(stream=records if first is _END else itertools.chain((first,), records), complete=True, pages=1)

    # -- reading -----------------------------------------------------------------------------

    def _open(self) -> IO[bytes]:
        path, cap = self.config.path, self.config.max_bytes
        where = f"source file {path}"
        try:
            handle = open(path, "rb")  # closed by _text when the last record is read
        except FileNotFoundError:
            raise SourceError(f"{where}: not found") from None
        except IsADirectoryError:
            raise SourceError(f"{where}: is a directory, not a file") from None
        except PermissionError:
            raise SourceError(f"{where}: permission denied") from None
        except OSError as exc:
            raise SourceError(f"{where}: cannot be read ({exc.strerror or type(exc).__name__})") from None
        try:
            size = os.fstat(handle.fileno()).st_size
        except OSError:
            size = 0
        if size > cap:
            handle.close()
            raise SourceError(f"{where}: {size} bytes, above source.max_bytes = {cap}")
        return handle

    def _text(self) -> Iterator[str]:
        """The file's text in chunks, checked as UTF-8 (a leading byte order mark dropped) and held
        to source.max_bytes as it is read (a file growing after the size check cannot overrun it)."""
        path, cap = self.config.path, self.config.max_bytes
        where = f"source file {path}"
        handle = self._open()
        decoder = codecs.getincrementaldecoder("utf-8")()
        read = 0
        offset = 0  # bytes decoded, after a byte order mark (as bytes.decode("utf-8-sig") counts)
        head: bytes | None = b""  # the first bytes, until there are enough to tell a byte order mark
        try:
            while True:
                try:
                    chunk = handle.read(CHUNK)
                except OSError as exc:
                    raise SourceError(f"{where}: cannot be read ({exc.strerror or type(exc).__name__})") from None
                end = not chunk
                read += len(chunk)
                if read > cap:
                    handle.seek(0, io.SEEK_END)
                    raise SourceError(f"{where}: {handle.tell()} bytes, above source.max_bytes = {cap}")
                if head is not None:
                    head += chunk
                    if len(head) < len(codecs.BOM_UTF8) and not end:
                        continue
                    chunk = head.removeprefix(codecs.BOM_UTF8)
                    head = None
                pending = len(decoder.getstate()[0])
                try:
                    text = decoder.decode(chunk, final=end)
                except UnicodeDecodeError as exc:
                    raise SourceError(f"{where}: not UTF-8 text (byte {offset - pending + exc.start})") from None
                offset += len(chunk)
                if text:
                    yield text
                if end:
                    return
        finally:
            handle.close()

    # -- formats -----------------------------------------------------------------------------

    def _json(self, chunks: Iterator[str]) -> Iterator[Any]:
        """The elements of the JSON list, one at a time; json.loads' errors, placed in the file."""
        reader = _JsonList(chunks)
        if reader.peek() != "[":
            # Not a list (or not JSON at all): the whole text says which, as json.loads has it.
            text = reader.rest()
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                raise SourceError(f"source file {self.config.path}: not valid JSON ({reader.place(exc.msg, exc.pos)})") from None
            except (ValueError, RecursionError) as exc:
                raise SourceError(f"source file {self.config.path}: not valid JSON ({json_problem(exc)})") from None
            raise SourceError(f"source file {self.config.path}: expected a JSON list of interviews, found {json_type(data)}")
        try:
            yield from reader.elements()
        except _JsonProblem as problem:
            raise SourceError(f"source file {self.config.path}: not valid JSON ({problem})") from None

    def _ndjson(self, chunks: Iterator[str]) -> Iterator[Any]:
        # Split on "\n" only: str.splitlines() would also split inside a JSON string holding
        # U+2028, \x1c and other characters JSON allows unescaped.
        for number, line in enumerate(_split(chunks, "\n"), start=1):
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except (ValueError, RecursionError) as exc:
                yield BrokenItem(f"line {number}", f"not valid JSON: {json_problem(exc, line=False)}", readable=json_top_level_fields(line))

    def _csv(self, chunks: Iterator[str]) -> Iterator[Any]:
        """Like csv.DictReader, but a row with more or fewer fields than the header is reported
        instead of padded or folded into a `None` key, and empty cells are None."""
        reader = csv.reader(_lines(chunks))
        try:
            header = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise SourceError(f"source file {self.config.path}: the CSV header cannot be read ({exc})") from None
        header = [name.strip() for name in header]
        repeated = sorted({name for name in header if header.count(name) > 1})
        if repeated:
            raise SourceError(f"source file {self.config.path}: the CSV header names {', '.join(map(repr, repeated))} more than once")
        row_number = 1  # the header is row 1, as a spreadsheet shows it
        while True:
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                row_number += 1
                yield BrokenItem(f"row {row_number}", f"not valid CSV ({exc})")
                continue
            row_number += 1
            if not any(cell.strip() for cell in row):
                continue  # a blank line, or a spreadsheet's trailing ",,,"
            if len(row) != len(header):
                yield BrokenItem(f"row {row_number}", f"{len(row)} fields where the header has {len(header)}", readable=csv_certain_cells(header, row))
                continue
            yield {name: (value if value != "" else None) for name, value in zip(header, row, strict=True)}


def _split(chunks: Iterator[str], separator: str) -> Iterator[str]:
    """The pieces of the text between separators (the last one after the final separator too)."""
    pending: list[str] = []  # a piece that spans chunks, joined once its end arrives
    for chunk in chunks:
        pieces = chunk.split(separator)
        if len(pieces) == 1:
            pending.append(chunk)
            continue
        pending.append(pieces[0])
        yield "".join(pending)
        yield from pieces[1:-1]
        pending = [pieces[-1]]
    yield "".join(pending)


def _lines(chunks: Iterator[str]) -> Iterator[str]:
    """Lines as io.StringIO(text, newline="") gives them (split after "\n", "\r\n" or a lone "\r",
    kept at the line's end), as csv.reader wants them."""
    pending: list[str] = []
    for chunk in chunks:
        cut = chunk.rfind("\n") + 1  # up to a "\n": a "\r" before it cannot be half of a "\r\n"
        if not cut:
            pending.append(chunk)
            continue
        pending.append(chunk[:cut])
        yield from io.StringIO("".join(pending), newline="")
        pending = [chunk[cut:]]
    rest = "".join(pending)
    if rest:
        yield from io.StringIO(rest, newline="")


class _JsonProblem(Exception):
    """What json.loads would have said of the whole text: its message, line and column."""


# An element is taken once this many characters follow it (or the text ends): `1e5` cut after `1e`
# would otherwise read as 1 followed by garbage. An error further than this from the end of the
# text read so far cannot be mended by more text, except an unterminated string.
LOOKAHEAD = 64


class _JsonList:
    """The elements of a JSON list read from text chunks: each parsed by json's decoder once the
    text holds all of it, the text before it dropped (lines and columns counted for messages)."""

    def __init__(self, chunks: Iterator[str]) -> None:
        self._chunks = chunks
        self._text = ""
        self._at = 0
        self._eof = False
        self._lines = 0  # line breaks in the text dropped so far
        self._column = 0  # characters after the last of them
        self._decode = json.JSONDecoder().raw_decode

    def _more(self, at_least: int = 1) -> bool:
        """Read on until `at_least` more characters (or the end), dropping what was consumed; False
        (and the text held unchanged) when nothing more could be read."""
        parts: list[str] = []
        added = 0
        while added < at_least and not self._eof:
            chunk = next(self._chunks, None)
            if chunk is None:
                self._eof = True
            else:
                parts.append(chunk)
                added += len(chunk)
        if not parts:
            return False
        done = self._text[: self._at]
        breaks = done.count("\n")
        self._lines += breaks
        self._column = len(done) - done.rfind("\n") - 1 if breaks else self._column + len(done)
        self._text = "".join([self._text[self._at :], *parts])
        self._at = 0
        return True

    def peek(self) -> str:
        """The next character that is not JSON whitespace ("" at the end)."""
        while True:
            text, at = self._text, self._at
            while at < len(text) and text[at] in _JSON_SPACE:
                at += 1
            self._at = at
            if at < len(text):
                return text[at]
            if not self._more():
                return ""

    def rest(self) -> str:
        """All the text from here to the end."""
        while self._more(1 << 62):
            pass
        return self._text

    def place(self, message: str, at: int) -> str:
        """`message at line L column C`, counted over the whole file, for position `at` of the text held."""
        before = self._text[:at]
        breaks = before.count("\n")
        line = self._lines + breaks + 1
        column = at - before.rfind("\n") if breaks else self._column + at + 1
        return f"{message} at line {line} column {column}"

    def elements(self) -> Iterator[Any]:
        if self.peek() != "[":
            raise _JsonProblem(self.place("Expecting value", self._at))
        self._at += 1
        if self.peek() != "]":
            while True:
                yield self._element()
                mark = self.peek()
                if mark == ",":
                    self._at += 1
                    continue
                if mark != "]":
                    raise _JsonProblem(self.place("Expecting ',' delimiter", self._at))
                break
        self._at += 1
        if self.peek():
            raise _JsonProblem(self.place("Extra data", self._at))

    def _element(self) -> Any:
        self.peek()
        while True:
            try:
                value, end = self._decode(self._text, self._at)
            except json.JSONDecodeError as exc:
                held = len(self._text) - self._at
                mendable = exc.msg.startswith("Unterminated string") or len(self._text) - exc.pos <= LOOKAHEAD
                if mendable and self._more(max(held, 1)):  # it may go on in the text not read yet: read as much again
                    continue
                raise _JsonProblem(self.place(exc.msg, exc.pos)) from None
            except RecursionError:
                raise _JsonProblem("nested too deeply") from None
            if len(self._text) - end < LOOKAHEAD and self._more():
                continue
            self._at = end
            return value


# -- what a broken record still tells ----------------------------------------------------------

# A JSON string (complete, escapes included), one structural character, a run of anything else, or
# the quote of a string that never closes.
_JSON_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[{}\[\]:,]|[^\s{}\[\]:,"]+|"')
_JSON_INTEGER = re.compile(r"-?(?:0|[1-9][0-9]*)")


def json_top_level_fields(line: str) -> tuple[tuple[str, str | int], ...]:
    """The `"key": "text"` and `"key": 12` pairs of a JSON object line that is not valid JSON, read
    at the object's top level only (a nested `"id"` is not the record's) and only where the pair is
    complete: followed by `,` or `}`, so a value cut off by a truncated line is not taken. A key
    that appears twice at the top level is left out: which value is meant cannot be told."""
    tokens = _JSON_TOKEN.findall(line)
    if not tokens or tokens[0] != "{":
        return ()
    found: dict[str, str | int] = {}
    repeated: set[str] = set()
    depth = 0
    for at, token in enumerate(tokens):
        if token in ("{", "["):
            depth += 1
        elif token in ("}", "]"):
            depth -= 1
        elif (
            depth == 1
            and token.startswith('"')
            and len(token) > 1
            and tokens[at - 1] in ("{", ",")
            and tokens[at + 1 : at + 2] == [":"]
            and tokens[at + 3 : at + 4] in ([","], ["}"])
        ):
            value = _json_scalar(tokens[at + 2])
            key = _json_scalar(token)
            if isinstance(key, str) and value is not None:
                if key in found:
                    repeated.add(key)
                found[key] = value
    return tuple((key, value) for key, value in found.items() if key not in repeated)


def _json_scalar(token: str) -> str | int | None:
    if token.startswith('"') and len(token) > 1 and token.endswith('"'):
        try:
            text = json.loads(token)
        except ValueError:
            return None
        return text if isinstance(text, str) else None
    return int(token) if _JSON_INTEGER.fullmatch(token) else None


def csv_certain_cells(header: list[str], row: list[str]) -> tuple[tuple[str, str], ...]:
    """The cells of a row with the wrong number of fields whose column is certain. The first cell
    is taken as written (a stray comma or a missing field comes after it). A later column is
    taken only when reading it from the left and from the right gives the same text: the fault
    lies on one side of the column or the other, and each reading is right on one side."""
    shift = len(row) - len(header)
    cells: list[tuple[str, str]] = []
    for at, name in enumerate(header):
        if at >= len(row) or not row[at].strip():
            continue
        if at == 0 or (0 <= at + shift < len(row) and row[at] == row[at + shift]):
            cells.append((name, row[at]))
    return tuple(cells)
