"""Inspections against a unit's code (扫码检查): the checklist, and what a filled one means.

An inspector at a shop scans its QR sticker (which opens the unit in the console with its
code), answers every item of the checklist, and each failed item becomes a hazard of the loop.
Plain functions over plain data: no connection, no clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from supervision.hazards import Category, Severity
from supervision.yaml_file import load_yaml_model


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class ChecklistItem(_Strict):
    """One point to check, and the hazard its failure is."""

    id: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")
    category: Category
    severity: Severity
    zh: str = Field(alias="zh-CN", min_length=1, max_length=300)
    en: str = Field(min_length=1, max_length=300)


class Checklist(_Strict):
    """The checklist file (supervision/inspection_checklist.yaml)."""

    version: str = Field(min_length=1, max_length=40)
    items: list[ChecklistItem] = Field(min_length=1, max_length=100)

    @model_validator(mode="after")
    def _unique(self) -> Checklist:
        seen: set[str] = set()
        for item in self.items:
            if item.id in seen:
                raise ValueError(f"item {item.id} is listed twice")
            seen.add(item.id)
        return self

    def item(self, item_id: str) -> ChecklistItem | None:
        """The item of that id, if the checklist has it."""
        return next((i for i in self.items if i.id == item_id), None)


class ChecklistError(ValueError):
    """The checklist file is broken; the message names the file and the field."""


def load_checklist(path: Path | None = None) -> Checklist:
    """The checklist from `path`, or the shipped one; ChecklistError if it is broken."""
    return load_yaml_model(Checklist, path, "inspection_checklist.yaml", ChecklistError)


@dataclass(frozen=True, slots=True)
class Answer:
    """An inspector's answer to one item: passed or not, and what they saw."""

    item: str
    ok: bool
    note: str = ""


@dataclass(frozen=True, slots=True)
class Failure:
    """A failed item, as the hazard it becomes."""

    item: str
    category: str
    severity: str
    description: str


class IncompleteInspection(ValueError):
    """Answers that do not cover the checklist exactly once each; the message says which."""


def judge(checklist: Checklist, answers: Sequence[Answer]) -> tuple[list[Answer], list[Failure]]:
    """The answers in the checklist's order, and the failures as hazards.

    Every item must be answered once: an inspection that skipped the exits is not a record
    that the exits were checked.
    """
    by_item: dict[str, Answer] = {}
    for a in answers:
        if checklist.item(a.item) is None:
            raise IncompleteInspection(f"item {a.item} is not on checklist {checklist.version}")
        if a.item in by_item:
            raise IncompleteInspection(f"item {a.item} is answered twice")
        by_item[a.item] = a
    missing = [i.id for i in checklist.items if i.id not in by_item]
    if missing:
        raise IncompleteInspection(f"not answered: {', '.join(missing)}")
    ordered = [by_item[i.id] for i in checklist.items]
    failures = [
        Failure(
            i.id,
            i.category,
            i.severity,
            f"检查不合格：{i.zh}" + (f"。{a.note.strip()}" if a.note.strip() else ""),
        )
        for i, a in zip(checklist.items, ordered, strict=True)
        if not a.ok
    ]
    return ordered, failures
