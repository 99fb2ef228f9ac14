"""Registry records (units, devices, contacts) as read from CSV, validated row by row."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from devices.catalog import DeviceType

# The same pattern as the CHECK in migrations/0001_core.sql; device ids are MQTT usernames too.
ID_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
Ident = Annotated[str, StringConstraints(pattern=ID_PATTERN)]
# Broker accounts of the engine itself: a device with such an id would share ingest's account
# name (and so, with client ids bound to accounts, its session). Compared case-insensitively.
RESERVED_DEVICE_IDS = frozenset({"ingest"})
RESERVED_DEVICE_PREFIXES = ("ingest-", "ingest_", "firesentry")


def reserved_device_id(device_id: str) -> bool:
    """Whether an id is kept for the engine's own broker accounts."""
    low = device_id.lower()
    return low in RESERVED_DEVICE_IDS or low.startswith(RESERVED_DEVICE_PREFIXES)


Text = Annotated[str, StringConstraints(max_length=500)]


class Category(StrEnum):
    """Kinds of supervised unit (a CHECK in migrations/0003_registry.sql keeps the same list)."""

    SMALL_VENUE = "small_venue"
    HIGH_RISE = "high_rise"
    SCHOOL = "school"
    HOSPITAL = "hospital"
    FACTORY = "factory"
    WAREHOUSE = "warehouse"
    RESIDENTIAL = "residential"
    PUBLIC_VENUE = "public_venue"
    OTHER = "other"


Role = Literal[
    "fire_safety_manager", "property_manager", "grid_worker", "fire_supervisor", "control_room"
]
Channel = Literal["sms", "voice", "email", "wecom", "dingtalk", "feishu"]
# What a unit may show on its public QR page (migration 0026).
PublicField = Literal["address", "grade", "emergency_contact"]


def _json_object(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    if "\\u0000" in value:
        raise ValueError("must not contain \\u0000 (PostgreSQL cannot store it)")
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON ({exc.msg} at char {exc.pos})") from None
    if not isinstance(parsed, dict):
        raise ValueError('must be a JSON object such as {"tank_depth_m": 3.0}')
    return parsed


def _split_channels(value: Any) -> Any:
    if isinstance(value, str):
        return [c.strip() for c in value.split(";") if c.strip()]
    return value


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class UnitRecord(_Record):
    """A supervised unit (a shop, a building, a plant)."""

    id: Ident
    name: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    address: Text = ""
    district: Text = ""
    grid: Text = ""
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)
    category: Category = Category.SMALL_VENUE
    # What the unit's QR code shows anyone (its name always): ";"-separated in a CSV.
    public: Annotated[list[PublicField], BeforeValidator(_split_channels)] = Field(
        default_factory=lambda: list[PublicField](["address", "grade"])
    )
    public_contact: Annotated[str, StringConstraints(max_length=200)] = Field(
        default="", description="the emergency contact the QR code shows, when public names it"
    )


class DeviceRecord(_Record):
    """A field device; its id is also its MQTT username."""

    id: Ident
    unit_id: Ident
    type: DeviceType
    model: Text = ""
    location: Text = ""
    attributes: Annotated[dict[str, Any], BeforeValidator(_json_object)] = Field(
        default_factory=dict
    )
    heartbeat_s: int = Field(default=60, ge=1, le=86400)

    @field_validator("id")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        if reserved_device_id(value):
            raise ValueError(
                f"{value!r} is reserved for the engine's broker accounts (ingest, ingest-*, "
                "firesentry*); choose another device id"
            )
        return value


class ContactRecord(_Record):
    """A person told about a unit's alerts (or about every unit of a district)."""

    unit_id: Ident | None = None
    # Validated even when empty, so that _unit_or_district sees a contact with neither.
    district: Text | None = Field(default=None, validate_default=True)
    name: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    role: Role
    phone: Annotated[str, StringConstraints(pattern=r"^\+?[0-9][0-9 ()-]{4,24}$")] | None = None
    email: Annotated[str, StringConstraints(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")] | None = None
    locale: Literal["zh-CN", "en"] = "zh-CN"
    channels: Annotated[list[Channel], BeforeValidator(_split_channels)] = Field(
        default_factory=list
    )

    @field_validator("district")
    @classmethod
    def _unit_or_district(cls, v: str | None, info: ValidationInfo) -> str | None:
        # Runs after unit_id (field order), so a failed unit_id is not reported twice.
        if not v and "unit_id" in info.data and info.data["unit_id"] is None:
            raise ValueError("a contact needs a unit_id or a district")
        return v


R = TypeVar("R", bound=_Record)

COLUMNS: dict[type[_Record], tuple[str, ...]] = {
    UnitRecord: (
        "id",
        "name",
        "address",
        "district",
        "grid",
        "lat",
        "lon",
        "category",
        "public",
        "public_contact",
    ),
    DeviceRecord: ("id", "unit_id", "type", "model", "location", "attributes", "heartbeat_s"),
    ContactRecord: (
        "unit_id",
        "district",
        "name",
        "role",
        "phone",
        "email",
        "locale",
        "channels",
    ),
}


@dataclass(frozen=True, slots=True, order=True)
class RowError:
    """One problem in an input file: where (file, row, column) and what."""

    file: str
    row: int | None
    column: str | None
    message: str

    def __str__(self) -> str:
        where = self.file
        if self.row is not None:
            where += f" row {self.row}"
        if self.column is not None:
            where += f", column {self.column}"
        return f"{where}: {self.message}"


@dataclass(slots=True)
class Parsed(Generic[R]):
    """The valid records of one file (with their row numbers) and the problems found in it.

    cells keeps every data row as read, valid or not, so that cross-row checks (duplicate ids,
    unknown units) can report rows that also have other problems.
    """

    records: list[tuple[int, R]] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    cells: list[tuple[int, dict[str, str]]] = field(default_factory=list)


def _rows(path: Path, name: str, errors: list[RowError]) -> Iterator[tuple[int, list[str]]]:
    """Yield (row number, cells); the header is row 1 and a row is numbered by its first line."""
    prev = 0
    try:
        # utf-8-sig: spreadsheets often save CSV with a byte-order mark.
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f, strict=True)
            for cells in reader:
                start, prev = prev + 1, reader.line_num
                if cells and any(c.strip() for c in cells):
                    yield start, cells
    except FileNotFoundError:
        errors.append(RowError(name, None, None, "file not found"))
    except UnicodeDecodeError as exc:
        errors.append(RowError(name, None, None, f"not UTF-8 text ({exc.reason})"))
    except csv.Error as exc:
        errors.append(RowError(name, prev + 1, None, f"malformed CSV: {exc}"))


_PATTERN_HINTS = {
    "id": "is not an id (1-64 of A-Z a-z 0-9 _ . -)",
    "unit_id": "is not an id (1-64 of A-Z a-z 0-9 _ . -)",
    "phone": "is not a phone number (digits, spaces, ( ) -, an optional leading +)",
    "email": "is not an email address",
}


def _describe(err: Any) -> str:
    if err["type"] == "missing":
        return "required, must not be empty"
    hint = _PATTERN_HINTS.get(str(err["loc"][0])) if err["loc"] else None
    if err["type"] == "string_pattern_mismatch" and hint:
        return f"{err['input']!r} {hint}"
    msg = str(err["msg"]).removeprefix("Value error, ")
    shown = err.get("input")
    if isinstance(shown, str | int | float) and err["type"] not in ("value_error",):
        msg += f" (got {shown!r})"
    return msg


def read_csv(path: Path, model: type[R], name: str | None = None) -> Parsed[R]:
    """Read and validate one CSV file; collect every problem instead of stopping at the first."""
    name = name or str(path)
    out: Parsed[R] = Parsed()
    columns = COLUMNS[model]
    required = [c for c in columns if model.model_fields[c].is_required()]
    header: list[str] | None = None
    for row, cells in _rows(path, name, out.errors):
        if header is None:
            header = [c.strip() for c in cells]
            for col in header:
                if col not in columns:
                    out.errors.append(
                        RowError(name, row, col, f"unknown column; expected {', '.join(columns)}")
                    )
            for col in required:
                if col not in header:
                    out.errors.append(RowError(name, row, col, "missing column"))
            if out.errors:
                return out
            continue
        if len(cells) > len(header):
            out.errors.append(
                RowError(name, row, None, f"{len(cells)} cells but the header has {len(header)}")
            )
            continue
        data = {k: v.strip() for k, v in zip(header, cells, strict=False) if v.strip()}
        out.cells.append((row, data))
        try:
            out.records.append((row, model.model_validate(data)))
        except ValidationError as exc:
            for err in exc.errors():
                column = str(err["loc"][0]) if err["loc"] else None
                out.errors.append(RowError(name, row, column, _describe(err)))
    if header is None and not out.errors:
        out.errors.append(RowError(name, 1, None, f"no header; expected {', '.join(columns)}"))
    return out


def check_unique_ids(parsed: Parsed[Any], name: str) -> None:
    """Add an error for every row whose id repeats an earlier row's."""
    first: dict[str, int] = {}
    for row, data in parsed.cells:
        ident = data.get("id")
        if ident is None:
            continue
        seen = first.setdefault(ident, row)
        if seen != row:
            parsed.errors.append(
                RowError(name, row, "id", f"duplicate id {ident!r} (first at row {seen})")
            )
