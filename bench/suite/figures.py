"""What a measurement yields (a figure and its reference) and the two ways it is shown: a table
for people and a JSON document for programs."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Reference:
    """What a figure is compared with, measured in the same run; `value` None when it could not
    be measured, and `note` then says why."""

    name: str
    value: float | None
    unit: str
    note: str = ""


@dataclass(frozen=True)
class Figure:
    """One measured number, with its reference (None when the figure has none)."""

    name: str
    value: float | None
    unit: str
    reference: Reference | None = None
    #: How it was measured, or why it could not be.
    note: str = ""

    @property
    def ratio(self) -> float | None:
        """value / reference, None unless both are known (and the reference is not zero)."""
        if self.value is None or self.reference is None or not self.reference.value:
            return None
        return self.value / self.reference.value


#: A figure function's answer: its value and its reference (or None).
Measured = tuple[float, Reference | None]


def as_json(figures: list[Figure]) -> dict[str, Any]:
    """`{"figures": [...]}`: each figure with name, value, unit, reference (the reference's
    value) and ratio, plus `reference_name` and `note`; each reference is listed as a figure of
    its own as well, so it can be looked up by name."""
    rows: list[dict[str, Any]] = []
    listed: set[str] = set()
    for figure in figures:
        reference = figure.reference
        rows.append(
            {
                "name": figure.name,
                "value": _number(figure.value),
                "unit": figure.unit,
                "reference": None if reference is None else _number(reference.value),
                "ratio": _number(figure.ratio),
                "reference_name": None if reference is None else reference.name,
                "note": figure.note,
            }
        )
        listed.add(figure.name)
    for figure in figures:
        reference = figure.reference
        if reference is None or reference.name in listed:
            continue
        listed.add(reference.name)
        rows.append(
            {
                "name": reference.name,
                "value": _number(reference.value),
                "unit": reference.unit,
                "reference": None,
                "ratio": None,
                "reference_name": None,
                "note": reference.note,
            }
        )
    return {"figures": rows}


def write_json(figures: list[Figure], path: Path) -> None:
    """Write `as_json(figures)` to `path`."""
    path.write_text(json.dumps(as_json(figures), indent=2) + "\n")


def _number(value: float | None) -> float | None:
    if value is None or math.isnan(value) or math.isinf(value):
        return None
    return round(value, 4)


def shown(value: float | None) -> str:
    """A number as the table shows it: three significant figures at least, thousands apart."""
    if value is None:
        return "-"
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def table(figures: list[Figure]) -> str:
    """The figures as a plain-text table: figure, value, unit, reference, its value, ratio;
    the notes (the figure's, then its reference's) below, numbered."""
    header = ("figure", "value", "unit", "reference", "ref. value", "ratio")
    rows: list[tuple[str, ...]] = []
    notes: list[str] = []
    for figure in figures:
        reference = figure.reference
        texts = [text for text in (figure.note, reference.note if reference else "") if text]
        mark = ""
        if texts:
            text = "; ".join(texts)
            if text not in notes:  # figures sharing a reference share its note
                notes.append(text)
            mark = f" [{notes.index(text) + 1}]"
        rows.append(
            (
                figure.name + mark,
                shown(figure.value),
                figure.unit,
                reference.name if reference else "-",
                shown(reference.value) if reference else "-",
                "-" if figure.ratio is None else f"{figure.ratio:.2f}",
            )
        )
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    right = {1, 4, 5}

    def line(row: tuple[str, ...]) -> str:
        cells = [
            cell.rjust(width) if i in right else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        return "  ".join(cells).rstrip()

    lines = [line(header), line(tuple("-" * width for width in widths))]
    lines += [line(row) for row in rows]
    if notes:
        lines.append("")
        lines += [f"[{number}] {text}" for number, text in enumerate(notes, 1)]
    return "\n".join(lines)
