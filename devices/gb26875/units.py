"""GB/T 26875.3-2011 application data units: a type flag, a count, that many objects.

    0  1  type flag (类型标志, §8.1 table 3)
    1  1  number of information objects
    2  .. the objects, each of the type's layout (§8.2, figures 18-46), multi-byte numbers
          low byte first; texts GB18030, NUL-padded to their field

Types 1-28 go up from a unit (send data, or the reply to a read); 61-91 come down from the
centre (reads, initialise, clock sync, duty check). Encoding and decoding both, so that the
gateway can confirm, ask and set the clock, and the simulator can speak as a UTD. Pure, no I/O.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from devices.gb26875.frame import TimeLabel

DESCRIPTION_LEN = 31


class DataType(IntEnum):
    """The type flag of an application data unit."""

    SYSTEM_STATUS = 1  # 上传建筑消防设施系统状态
    COMPONENT_STATUS = 2  # 上传建筑消防设施部件运行状态
    COMPONENT_ANALOG = 3  # 上传建筑消防设施部件模拟量值
    OPERATION = 4  # 上传建筑消防设施操作信息
    SOFTWARE_VERSION = 5  # 上传建筑消防设施软件版本
    SYSTEM_CONFIG = 6  # 上传建筑消防设施系统配置情况
    COMPONENT_CONFIG = 7  # 上传建筑消防设施部件配置情况
    SYSTEM_TIME = 8  # 上传建筑消防设施系统时间
    UTD_STATUS = 21  # 上传用户信息传输装置运行状态
    UTD_OPERATION = 24  # 上传用户信息传输装置操作信息
    UTD_SOFTWARE_VERSION = 25  # 上传用户信息传输装置软件版本
    UTD_CONFIG = 26  # 上传用户信息传输装置配置情况
    UTD_TIME = 28  # 上传用户信息传输装置系统时间
    READ_SYSTEM_STATUS = 61
    READ_COMPONENT_STATUS = 62
    READ_COMPONENT_ANALOG = 63
    READ_OPERATIONS = 64
    READ_SOFTWARE_VERSION = 65
    READ_SYSTEM_CONFIG = 66
    READ_COMPONENT_CONFIG = 67
    READ_SYSTEM_TIME = 68
    READ_UTD_STATUS = 81
    READ_UTD_OPERATIONS = 84
    READ_UTD_SOFTWARE_VERSION = 85
    READ_UTD_CONFIG = 86
    READ_UTD_TIME = 88
    INIT_UTD = 89  # 初始化用户信息传输装置
    SYNC_CLOCK = 90  # 同步用户信息传输装置时钟
    DUTY_CHECK = 91  # 查岗命令


# ---------- the objects ----------


@dataclass(frozen=True, slots=True)
class SystemStatus:
    """Type 1: a building fire-facility system's status word (bits: SYSTEM_BITS)."""

    system_type: int
    system_address: int
    status: int
    time: TimeLabel


@dataclass(frozen=True, slots=True)
class ComponentStatus:
    """Type 2: a component's status word (COMPONENT_BITS), its address and description."""

    system_type: int
    system_address: int
    component_type: int
    component_address: int  # four bytes, low first; the loop/point split is the vendor's
    status: int
    description: str
    time: TimeLabel


@dataclass(frozen=True, slots=True)
class ComponentAnalog:
    """Type 3: an analog value of a component (a signed count of the analog type's unit)."""

    system_type: int
    system_address: int
    component_type: int
    component_address: int
    analog_type: int
    value: int
    time: TimeLabel


@dataclass(frozen=True, slots=True)
class Operation:
    """Type 4: an operation at the panel (flags: reset, silence, manual alarm, …)."""

    system_type: int
    system_address: int
    flags: int
    operator: int
    time: TimeLabel


@dataclass(frozen=True, slots=True)
class SoftwareVersion:
    """Type 5: a system's software version."""

    system_type: int
    system_address: int
    major: int
    minor: int


@dataclass(frozen=True, slots=True)
class SystemConfig:
    """Type 6: a system's configuration, as text."""

    system_type: int
    system_address: int
    text: str


@dataclass(frozen=True, slots=True)
class ComponentConfig:
    """Type 7: a component's configuration: its type, address and description."""

    system_type: int
    system_address: int
    component_type: int
    component_address: int
    description: str


@dataclass(frozen=True, slots=True)
class SystemTime:
    """Type 8: a system's clock."""

    system_type: int
    system_address: int
    time: TimeLabel


@dataclass(frozen=True, slots=True)
class UtdStatus:
    """Type 21: the transmission device's own status byte (UTD_BITS)."""

    status: int
    time: TimeLabel


@dataclass(frozen=True, slots=True)
class UtdOperation:
    """Type 24: an operation at the transmission device (bit 5: it answered a duty check)."""

    flags: int
    operator: int
    time: TimeLabel


@dataclass(frozen=True, slots=True)
class UtdSoftwareVersion:
    """Type 25: the transmission device's software version."""

    major: int
    minor: int


@dataclass(frozen=True, slots=True)
class UtdConfig:
    """Type 26: the transmission device's configuration, as text."""

    text: str


@dataclass(frozen=True, slots=True)
class UtdTime:
    """Type 28: the transmission device's clock."""

    time: TimeLabel


@dataclass(frozen=True, slots=True)
class ReadSystem:
    """Types 61, 65, 66, 68: read a system's status, version, configuration or clock."""

    system_type: int
    system_address: int


@dataclass(frozen=True, slots=True)
class ReadComponent:
    """Types 62, 63, 67: read a component's status, analog value or configuration."""

    system_type: int
    system_address: int
    component_address: int


@dataclass(frozen=True, slots=True)
class ReadRecords:
    """Type 64: read `count` operation records of a system from `start`."""

    system_type: int
    system_address: int
    count: int
    start: TimeLabel


@dataclass(frozen=True, slots=True)
class ReadUtd:
    """Types 81, 85, 86, 88, 89: read the device's status, version, configuration or
    clock, or initialise it (one reserved byte)."""

    reserved: int = 0


@dataclass(frozen=True, slots=True)
class ReadUtdRecords:
    """Type 84: read `count` of the device's operation records from `start`."""

    count: int
    start: TimeLabel


@dataclass(frozen=True, slots=True)
class SyncClock:
    """Type 90: set the device's clock to the centre's."""

    time: TimeLabel


@dataclass(frozen=True, slots=True)
class DutyCheck:
    """Type 91: 查岗, someone at the unit must answer within `timeout_min` minutes."""

    timeout_min: int


InfoObject = (
    SystemStatus
    | ComponentStatus
    | ComponentAnalog
    | Operation
    | SoftwareVersion
    | SystemConfig
    | ComponentConfig
    | SystemTime
    | UtdStatus
    | UtdOperation
    | UtdSoftwareVersion
    | UtdConfig
    | UtdTime
    | ReadSystem
    | ReadComponent
    | ReadRecords
    | ReadUtd
    | ReadUtdRecords
    | SyncClock
    | DutyCheck
)


@dataclass(frozen=True, slots=True)
class DataUnit:
    """An application data unit: its type and its objects (all of that type's class)."""

    type: int
    objects: tuple[InfoObject, ...]


class DataUnitError(ValueError):
    """An application data unit that does not decode; the message says why."""


# ---------- text fields ----------


def _text_field(text: str, size: int) -> bytes:
    b = text.encode("gb18030")
    if len(b) > size:
        raise DataUnitError(f"{text!r} is {len(b)} bytes in GB18030: the field holds {size}")
    return b.ljust(size, b"\0")


def _text(b: bytes) -> str:
    # Cut at the first NUL: devices leave garbage after it.
    return b.split(b"\0", 1)[0].decode("gb18030", errors="replace")


# ---------- per-type layouts ----------


@dataclass(frozen=True, slots=True)
class _Layout:
    """How one type's objects go to and from bytes: fixed `size` (None: read by `read`)."""

    cls: type[Any]
    size: int | None
    pack: Callable[[Any], bytes]
    unpack: Callable[[bytes], Any]
    max_count: int
    read: Callable[[memoryview], int] | None = None  # the size of the object starting here


def _t(b: bytes) -> TimeLabel:
    return TimeLabel.decode(b)


_SYS = struct.Struct("<BBH")  # system type, address, status
_COMP = struct.Struct("<BBBIH")  # system type, address, component type, address, status
_ANALOG = struct.Struct("<BBBIBh")
_OP = struct.Struct("<BBBB")
_COMP_CFG = struct.Struct("<BBBI")
_READ_COMP = struct.Struct("<BBI")


def _system_status() -> _Layout:
    def pack(o: SystemStatus) -> bytes:
        return _SYS.pack(o.system_type, o.system_address, o.status) + o.time.encode()

    def unpack(b: bytes) -> SystemStatus:
        st, sa, status = _SYS.unpack_from(b)
        return SystemStatus(st, sa, status, _t(b[4:10]))

    return _Layout(SystemStatus, 10, pack, unpack, 102)


def _component_status() -> _Layout:
    def pack(o: ComponentStatus) -> bytes:
        head = _COMP.pack(
            o.system_type, o.system_address, o.component_type, o.component_address, o.status
        )
        return head + _text_field(o.description, DESCRIPTION_LEN) + o.time.encode()

    def unpack(b: bytes) -> ComponentStatus:
        st, sa, ct, ca, status = _COMP.unpack_from(b)
        return ComponentStatus(st, sa, ct, ca, status, _text(b[9:40]), _t(b[40:46]))

    return _Layout(ComponentStatus, 46, pack, unpack, 22)


def _component_analog() -> _Layout:
    def pack(o: ComponentAnalog) -> bytes:
        head = _ANALOG.pack(
            o.system_type,
            o.system_address,
            o.component_type,
            o.component_address,
            o.analog_type,
            o.value,
        )
        return head + o.time.encode()

    def unpack(b: bytes) -> ComponentAnalog:
        st, sa, ct, ca, kind, value = _ANALOG.unpack_from(b)
        return ComponentAnalog(st, sa, ct, ca, kind, value, _t(b[10:16]))

    return _Layout(ComponentAnalog, 16, pack, unpack, 63)


def _operation() -> _Layout:
    def pack(o: Operation) -> bytes:
        return _OP.pack(o.system_type, o.system_address, o.flags, o.operator) + o.time.encode()

    def unpack(b: bytes) -> Operation:
        st, sa, flags, operator = _OP.unpack_from(b)
        return Operation(st, sa, flags, operator, _t(b[4:10]))

    return _Layout(Operation, 10, pack, unpack, 102)


def _bytes_of(cls: type[Any], fields: str, max_count: int, timed: str | None = None) -> _Layout:
    """A layout of one-byte fields, and the time label `timed` last (if any)."""
    names = fields.split()
    size = len(names) + (6 if timed else 0)

    def pack(o: Any) -> bytes:
        head = bytes(getattr(o, n) for n in names)
        return head + getattr(o, timed).encode() if timed else head

    def unpack(b: bytes) -> Any:
        values: list[Any] = list(b[: len(names)])
        if timed:
            values.append(_t(b[len(names) : len(names) + 6]))
        return cls(*values)

    return _Layout(cls, size, pack, unpack, max_count)


def _text_of(cls: type[Any], prefix: str, max_count: int) -> _Layout:
    """A layout of one-byte fields, then a text with its one-byte length."""
    names = prefix.split()

    def pack(o: Any) -> bytes:
        b = o.text.encode("gb18030")
        if len(b) > 255:
            raise DataUnitError(f"configuration text of {len(b)} bytes: at most 255")
        return bytes(getattr(o, n) for n in names) + bytes((len(b),)) + b

    def unpack(b: bytes) -> Any:
        n = b[len(names)]
        text = b[len(names) + 1 : len(names) + 1 + n].decode("gb18030", errors="replace")
        return cls(*b[: len(names)], text)

    def read(view: memoryview) -> int:
        if len(view) <= len(names):
            return len(names) + 1
        return len(names) + 1 + view[len(names)]

    return _Layout(cls, None, pack, unpack, max_count, read)


def _component_config() -> _Layout:
    def pack(o: ComponentConfig) -> bytes:
        head = _COMP_CFG.pack(
            o.system_type, o.system_address, o.component_type, o.component_address
        )
        return head + _text_field(o.description, DESCRIPTION_LEN)

    def unpack(b: bytes) -> ComponentConfig:
        st, sa, ct, ca = _COMP_CFG.unpack_from(b)
        return ComponentConfig(st, sa, ct, ca, _text(b[7:38]))

    return _Layout(ComponentConfig, 38, pack, unpack, 26)


def _read_component(max_count: int) -> _Layout:
    def pack(o: ReadComponent) -> bytes:
        return _READ_COMP.pack(o.system_type, o.system_address, o.component_address)

    def unpack(b: bytes) -> ReadComponent:
        st, sa, ca = _READ_COMP.unpack_from(b)
        return ReadComponent(st, sa, ca)

    return _Layout(ReadComponent, 6, pack, unpack, max_count)


LAYOUTS: dict[int, _Layout] = {
    DataType.SYSTEM_STATUS: _system_status(),
    DataType.COMPONENT_STATUS: _component_status(),
    DataType.COMPONENT_ANALOG: _component_analog(),
    DataType.OPERATION: _operation(),
    DataType.SOFTWARE_VERSION: _bytes_of(
        SoftwareVersion, "system_type system_address major minor", 1
    ),
    DataType.SYSTEM_CONFIG: _text_of(SystemConfig, "system_type system_address", 3),
    DataType.COMPONENT_CONFIG: _component_config(),
    DataType.SYSTEM_TIME: _bytes_of(SystemTime, "system_type system_address", 1, timed="time"),
    DataType.UTD_STATUS: _bytes_of(UtdStatus, "status", 1, timed="time"),
    DataType.UTD_OPERATION: _bytes_of(UtdOperation, "flags operator", 127, timed="time"),
    DataType.UTD_SOFTWARE_VERSION: _bytes_of(UtdSoftwareVersion, "major minor", 1),
    DataType.UTD_CONFIG: _text_of(UtdConfig, "", 1),
    DataType.UTD_TIME: _bytes_of(UtdTime, "", 1, timed="time"),
    DataType.READ_SYSTEM_STATUS: _bytes_of(ReadSystem, "system_type system_address", 102),
    DataType.READ_COMPONENT_STATUS: _read_component(22),
    DataType.READ_COMPONENT_ANALOG: _read_component(63),
    DataType.READ_OPERATIONS: _bytes_of(
        ReadRecords, "system_type system_address count", 1, timed="start"
    ),
    DataType.READ_SOFTWARE_VERSION: _bytes_of(ReadSystem, "system_type system_address", 1),
    DataType.READ_SYSTEM_CONFIG: _bytes_of(ReadSystem, "system_type system_address", 3),
    DataType.READ_COMPONENT_CONFIG: _read_component(26),
    DataType.READ_SYSTEM_TIME: _bytes_of(ReadSystem, "system_type system_address", 1),
    DataType.READ_UTD_STATUS: _bytes_of(ReadUtd, "reserved", 1),
    DataType.READ_UTD_OPERATIONS: _bytes_of(ReadUtdRecords, "count", 1, timed="start"),
    DataType.READ_UTD_SOFTWARE_VERSION: _bytes_of(ReadUtd, "reserved", 1),
    DataType.READ_UTD_CONFIG: _bytes_of(ReadUtd, "reserved", 1),
    DataType.READ_UTD_TIME: _bytes_of(ReadUtd, "reserved", 1),
    DataType.INIT_UTD: _bytes_of(ReadUtd, "reserved", 1),
    DataType.SYNC_CLOCK: _bytes_of(SyncClock, "", 1, timed="time"),
    DataType.DUTY_CHECK: _bytes_of(DutyCheck, "timeout_min", 1),
}


def encode(unit: DataUnit) -> bytes:
    """The unit's bytes; DataUnitError for an object of the wrong class or too many."""
    layout = LAYOUTS.get(unit.type)
    if layout is None:
        raise DataUnitError(f"unknown type flag {unit.type}")
    if not 1 <= len(unit.objects) <= layout.max_count:
        raise DataUnitError(
            f"type {unit.type} holds 1 to {layout.max_count} objects, not {len(unit.objects)}"
        )
    parts = [bytes((unit.type, len(unit.objects)))]
    for o in unit.objects:
        if not isinstance(o, layout.cls):
            raise DataUnitError(f"type {unit.type} holds {layout.cls.__name__}, not {o!r}")
        try:
            parts.append(layout.pack(o))
        except (struct.error, ValueError, OverflowError) as exc:
            if isinstance(exc, DataUnitError):
                raise
            raise DataUnitError(f"type {unit.type}: {o!r}: {exc}") from None
    return b"".join(parts)


def decode(data: bytes) -> DataUnit:
    """A unit from its bytes; DataUnitError naming what is wrong (unknown type, a count the
    bytes do not hold, bytes left over)."""
    if len(data) < 2:
        raise DataUnitError(f"{len(data)} bytes: a data unit has a type flag and a count")
    kind, count = data[0], data[1]
    layout = LAYOUTS.get(kind)
    if layout is None:
        raise DataUnitError(f"unknown type flag {kind}")
    if count == 0:
        raise DataUnitError(f"type {kind} with no object")
    view = memoryview(data)
    at = 2
    objects: list[Any] = []
    for i in range(count):
        size = layout.size if layout.read is None else layout.read(view[at:])
        assert size is not None
        if at + size > len(data):
            raise DataUnitError(
                f"type {kind}: object {i + 1} of {count} needs {size} bytes, "
                f"{len(data) - at} are left"
            )
        objects.append(layout.unpack(bytes(view[at : at + size])))
        at += size
    if at != len(data):
        raise DataUnitError(f"type {kind}: {len(data) - at} bytes after {count} objects")
    return DataUnit(kind, tuple(objects))


def unit(kind: DataType, objects: Sequence[InfoObject]) -> DataUnit:
    """A data unit of `kind` holding `objects`."""
    return DataUnit(int(kind), tuple(objects))
