"""The `file` source: a JSON list, newline-delimited JSON, or CSV on disk. Always a complete fetch.

Records that cannot be parsed (an ndjson line that is not JSON, a CSV row with the wrong number of
fields) become `BrokenItem`s in their place; the rest still arrive. A file that cannot be used at
all (missing, unreadable, too large, not a JSON list) is a `SourceError` naming the path.
"""

from __future__ import annotations

import csv
import io
import json
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
                items.append(BrokenItem(f"line {number}", f"not valid JSON: {json_problem(exc, line=False)}"))
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
                items.append(BrokenItem(f"row {row_number}", f"{len(row)} fields where the header has {len(header)}"))
                continue
            items.append({name: (value if value != "" else None) for name, value in zip(header, row, strict=True)})
        return items
