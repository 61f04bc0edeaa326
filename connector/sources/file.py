"""The `file` source: a JSON list, newline-delimited JSON, or CSV on disk. Always a complete fetch.

Records that cannot be parsed (an ndjson line that is not JSON, a CSV row with the wrong number of
fields) become `BrokenItem`s in their place; the rest still arrive. A broken record carries the
top-level fields that can still be read with certainty (`BrokenItem.readable`), so the mapper can
file it under its remote id. A file that cannot be used at all (missing, unreadable, too large, not
a JSON list) is a `SourceError` naming the path.
"""

from __future__ import annotations

import csv
import io
import json
import re
from typing import Any

from connector.config import FileSourceConfig
from connector.errors import SourceError
from connector.sources import BrokenItem, FetchResult, json_problem, json_type


class FileSource:
    kind = "file"

    def __init__(self, config: FileSourceConfig) -> None:
        self.config = config

    def close(self) -> None:
        pass

    def fetch(self, since: str | None = None) -> FetchResult:
        text = self._read()
        parse = {"json": self._json, "ndjson": self._ndjson, "csv": self._csv}[self.config.resolved_format]
        return FetchResult(items=parse(text), complete=True, pages=1)

    # -- reading -----------------------------------------------------------------------------

    def _read(self) -> str:
        path, cap = self.config.path, self.config.max_bytes
        where = f"source file {path}"
        try:
            with open(path, "rb") as handle:
                # Read at most one byte past the cap: a file that grows after a stat() cannot
                # overrun it, and the size check needs no second look at the file.
                data = handle.read(cap + 1)
                if len(data) > cap:
                    handle.seek(0, io.SEEK_END)
                    raise SourceError(f"{where}: {handle.tell()} bytes, above source.max_bytes = {cap}")
        except FileNotFoundError:
            raise SourceError(f"{where}: not found") from None
        except IsADirectoryError:
            raise SourceError(f"{where}: is a directory, not a file") from None
        except PermissionError:
            raise SourceError(f"{where}: permission denied") from None
        except OSError as exc:
            raise SourceError(f"{where}: cannot be read ({exc.strerror or type(exc).__name__})") from None
        try:
            return data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise SourceError(f"{where}: not UTF-8 text (byte {exc.start})") from None

    # -- formats -----------------------------------------------------------------------------

    def _json(self, text: str) -> list[Any]:
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise SourceError(f"source file {self.config.path}: not valid JSON ({json_problem(exc)})") from None
        if not isinstance(data, list):
            raise SourceError(f"source file {self.config.path}: expected a JSON list of interviews, found {json_type(data)}")
        return data

    def _ndjson(self, text: str) -> list[Any]:
        items: list[Any] = []
        # Split on "\n" only: str.splitlines() would also split inside a JSON string holding
        # U+2028, \x1c and other characters JSON allows unescaped.
        for number, line in enumerate(text.split("\n"), start=1):
            if not line.strip():
                continue
            try:
                items.append(json.loads(line))
            except (ValueError, RecursionError) as exc:
                items.append(BrokenItem(f"line {number}", f"not valid JSON: {json_problem(exc, line=False)}", readable=json_top_level_fields(line)))
        return items

    def _csv(self, text: str) -> list[Any]:
        """Like csv.DictReader, but a row with more or fewer fields than the header is reported
        instead of padded or folded into a `None` key, and empty cells are None."""
        reader = csv.reader(io.StringIO(text, newline=""))
        try:
            header = next(reader)
        except StopIteration:
            return []
        except csv.Error as exc:
            raise SourceError(f"source file {self.config.path}: the CSV header cannot be read ({exc})") from None
        header = [name.strip() for name in header]
        repeated = sorted({name for name in header if header.count(name) > 1})
        if repeated:
            raise SourceError(f"source file {self.config.path}: the CSV header names {', '.join(map(repr, repeated))} more than once")
        items: list[Any] = []
        row_number = 1  # the header is row 1, as a spreadsheet shows it
        while True:
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                row_number += 1
                items.append(BrokenItem(f"row {row_number}", f"not valid CSV ({exc})"))
                continue
            row_number += 1
            if not any(cell.strip() for cell in row):
                continue  # a blank line, or a spreadsheet's trailing ",,,"
            if len(row) != len(header):
                items.append(BrokenItem(f"row {row_number}", f"{len(row)} fields where the header has {len(header)}", readable=csv_certain_cells(header, row)))
                continue
            items.append({name: (value if value != "" else None) for name, value in zip(header, row, strict=True)})
        return items


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
