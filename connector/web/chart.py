"""The chart of the last passes, as inline SVG built on the server: pure (numbers in, markup out).

Per pass, oldest on the left: a bar of the calls made to Jobylon stacked by action kind, and beside it
a bar of the items that failed in that pass (failed, in doubt, invalid). Colours come from classes
the page's own stylesheet defines (`svg .create` ...): no style attribute, no script, so the page's
Content-Security-Policy needs nothing inline. Every text placed in the SVG is escaped here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from markupsafe import Markup, escape

ACTIONS = ("create", "update", "recreate", "delete")  # stacking order, bottom up; any other action is "other"
FAILED_COUNTS = ("failed", "in_doubt", "invalid")


@dataclass(frozen=True)
class PassBar:
    run_id: int
    started_at: str | None
    outcome: str
    calls: dict[str, int] = field(default_factory=dict)  # action -> calls made
    failed_items: int = 0

    @property
    def total_calls(self) -> int:
        return sum(self.calls.values())


def failed_items(counts: dict[str, int]) -> int:
    """The items a pass's counts say failed: failed, in doubt or invalid."""
    return sum(int(counts.get(name, 0)) for name in FAILED_COUNTS)


def nice_ceiling(value: int) -> int:
    """The smallest 1, 2 or 5 times a power of ten at or above `value` (at least 1): the axis' top."""
    top = 1
    while True:
        for step in (1, 2, 5):
            if step * top >= value:
                return step * top
        top *= 10


def _stacks(bar: PassBar) -> list[tuple[str, int]]:
    known = [(action, bar.calls.get(action, 0)) for action in ACTIONS]
    other = sum(n for action, n in bar.calls.items() if action not in ACTIONS)
    return [(a, n) for a, n in [*known, ("other", other)] if n > 0]


def _n(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _label(bar: PassBar) -> str:
    parts = [f"{n} {action}" for action, n in _stacks(bar)] or ["no calls"]
    when = f" at {bar.started_at}" if bar.started_at else ""
    return f"pass {bar.run_id} ({bar.outcome}){when}: {', '.join(parts)}; {bar.failed_items} failed item{'s' if bar.failed_items != 1 else ''}"


def _short_time(iso_text: str | None) -> str:
    if not iso_text or len(iso_text) < 16:
        return iso_text or ""
    return iso_text[5:10] + " " + iso_text[11:16]  # MM-DD HH:MM (UTC)


def pass_chart(passes: Iterable[PassBar], *, width: int = 760, height: int = 240) -> Markup:
    """The SVG for these passes (given newest first, as the store lists them; drawn oldest first)."""
    bars = list(passes)[::-1]
    left, right, top, bottom = 44, 8, 10, 38
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = nice_ceiling(max([b.total_calls for b in bars] + [b.failed_items for b in bars] + [1]))
    out: list[str] = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img" aria-labelledby="chart-title">',
        f'<title id="chart-title">{escape(f"Calls per action and failed items, last {len(bars)} passes")}</title>',
    ]
    for tick in (0, peak // 2 if peak >= 2 else None, peak):
        if tick is None:
            continue
        y = top + plot_h - plot_h * tick / peak
        out.append(f'<line class="grid" x1="{left}" x2="{width - right}" y1="{_n(y)}" y2="{_n(y)}"/>')
        out.append(f'<text class="tick" x="{left - 6}" y="{_n(y + 4)}" text-anchor="end">{tick}</text>')
    if not bars:
        out.append(f'<text class="empty" x="{left + plot_w / 2:.0f}" y="{top + plot_h / 2:.0f}" text-anchor="middle">no passes yet</text>')
    slot = plot_w / max(len(bars), 1)
    bar_w = max(min(slot * 0.4, 24), 1.5)
    for index, bar in enumerate(bars):
        x = left + slot * index + (slot - 2 * bar_w) / 2
        out.append(f'<g class="pass" data-run="{bar.run_id}" data-calls="{bar.total_calls}" data-failed="{bar.failed_items}">')
        out.append(f"<title>{escape(_label(bar))}</title>")
        y = top + plot_h
        for action, count in _stacks(bar):
            h = plot_h * count / peak
            y -= h
            out.append(f'<rect class="{action}" x="{_n(x)}" y="{_n(y)}" width="{_n(bar_w)}" height="{_n(h)}"/>')
        if bar.failed_items:
            h = plot_h * bar.failed_items / peak
            out.append(f'<rect class="failed" x="{_n(x + bar_w)}" y="{_n(top + plot_h - h)}" width="{_n(bar_w)}" height="{_n(h)}"/>')
        if bar.outcome not in ("ok", "running"):
            out.append(f'<rect class="outcome-mark" x="{_n(x)}" y="{top + plot_h + 2}" width="{_n(2 * bar_w)}" height="3"/>')
        out.append("</g>")
    out.append(f'<line class="axis" x1="{left}" x2="{width - right}" y1="{top + plot_h}" y2="{top + plot_h}"/>')
    if bars:
        first, last = bars[0], bars[-1]
        out.append(f'<text class="tick" x="{left}" y="{height - 18}">{escape(f"#{first.run_id} {_short_time(first.started_at)}")}</text>')
        if len(bars) > 1:
            text = escape(f"#{last.run_id} {_short_time(last.started_at)}")
            out.append(f'<text class="tick" x="{width - right}" y="{height - 18}" text-anchor="end">{text}</text>')
        out.append(f'<text class="tick" x="{left + plot_w / 2:.0f}" y="{height - 4}" text-anchor="middle">passes, oldest to newest (UTC)</text>')
    out.append("</svg>")
    return Markup("".join(out))
