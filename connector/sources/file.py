"""The `file` source: a JSON list, newline-delimited JSON, or CSV on disk. Always a complete fetch."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from connector.config import FileSourceConfig
from connector.errors import SourceError
from connector.model import BrokenItem
from connector.sources import FetchResult


class FileSource:
    kind = "file"

    def __init__(self, config: FileSourceConfig) -> None:
        self.config = config

    def close(self) -> None:
        pass

    def fetch(self, since: str | None = None) -> FetchResult:
        path = self.config.path
        try:
            size = path.stat().st_size
            if size > self.config.max_bytes:
                raise SourceError(f"source file {path}: {size} bytes, above source.max_bytes = {self.config.max_bytes}")
            text = path.read_text("utf-8-sig")
        except SourceError:
            raise
        except FileNotFoundError:
            raise SourceError(f"source file {path}: not found") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise SourceError(f"source file {path}: cannot be read ({type(exc).__name__}: {exc})") from None
        fmt = self.config.resolved_format
        items = {"json": self._json, "ndjson": self._ndjson, "csv": self._csv}[fmt](text)
        return FetchResult(items=items, complete=True)

    def _json(self, text: str) -> list[Any]:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SourceError(f"source file {self.config.path}: not valid JSON ({exc})") from None
        if not isinstance(data, list):
            raise SourceError(f"source file {self.config.path}: expected a JSON list of interviews, found {type(data).__name__}")
        return data

    def _ndjson(self, text: str) -> list[Any]:
        items: list[Any] = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                items.append(json.loads(line))
            except json.JSONDecodeError as exc:
                items.append(BrokenItem(f"line {number}", f"not valid JSON ({exc.msg} at column {exc.colno})"))
        return items

    def _csv(self, text: str) -> list[Any]:
        reader = csv.reader(io.StringIO(text, newline=""))
        try:
            header = next(reader)
        except StopIteration:
            return []
        except csv.Error as exc:
            raise SourceError(f"source file {self.config.path}: the CSV header cannot be read ({exc})") from None
        items: list[Any] = []
        row_number = 1
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
                continue
            if len(row) != len(header):
                items.append(BrokenItem(f"row {row_number}", f"{len(row)} fields where the header has {len(header)}"))
                continue
            items.append({name: (value if value != "" else None) for name, value in zip(header, row, strict=True)})
        return items
