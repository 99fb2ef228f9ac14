"""GB/T 26875.3-2011 frames and data units: captured frames decode to what they say, every
frame and data-unit type round-trips through encode → decode (hypothesis), and what is not a
frame or a unit is refused with the reason.

The captured frames come from public implementations (their tests and comments), each checked
against the standard's checksum rule:
V1 shootingfans/codec_gb26875_3_2011 codec/codec_test.go (also dgiot's decoder test vector);
V2-V9 comments in dgiot/dgiot apps/dgiot_gb26875/src/protocol/dgiot_gb26875_decoder.erl
(vendor captures; V8/V9 a Dahua device).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices.catalog import EventKind
from devices.gb26875 import events
from devices.gb26875 import frame as fr
from devices.gb26875 import units as un
from devices.gb26875.frame import Command, Frame, FrameError, TimeLabel
from devices.gb26875.units import DataType, DataUnit, DataUnitError

CST = dt.timezone(dt.timedelta(hours=8))


def hexb(text: str) -> bytes:
    """Bytes from hex with spaces (laid out field by field)."""
    return bytes.fromhex("".join(text.split()))


V1 = hexb(
    "4040 0000 0101 180d11160a14 000000000000 060504030201 3000 02"
    " 02 01 01 03 00 d9000600 0200"
    " a3c1c7f8a3b1b2e3dfc8b2b8d7dfc0c8 000000000000000000000000000000"
    " 301213010814 68 2323"
)
V2 = hexb(
    "4040 1400 1000 0509091b0715 2c312c320000 784d07918e23 3000 02"
    " 02 01 01 01 2a 01000100 0200"
    " 31bac5bdd3bfdab0e531bbd8c2b731bac5 00 bac5d6f7bbfaf898cfa0000000"
    " 251103010 60c 47 2323"
)
V3 = hexb(
    "4040 0700 0102 2D340E0C0716 000000000000 640000000000 3000 02"
    " 02 01 01 01 00 37000A00 0400" + " 00" * 31 + " 2D340E0C0716 1A 2323"
)
V5 = hexb(
    "4040 0200 0102 162A100C0716 000000000000 640000000000 0900 02 15 01 14 0E2A100C0716 88 2323"
)
V7 = hexb(
    "4040 0000 0102 152A100C0716 000000000000 640000000000 0A00 02 18 01 01 01 0A2A100C0716 73 2323"
)
V8 = hexb("4040 0900 0102 2A380A080716 000000000000 640000000000 0000 02 03 2323")
# Printed as the reply to a vendor heartbeat, with a checksum of 0x30 where the bytes sum to
# 0x32: hand-edited, and what a bad checksum looks like.
V12 = hexb("4040 6900 1000 0a110e030615 ac103cd56d1d 000000000000 0100 03 17 30 2323")


def test_a_fire_alarm_frame_from_a_public_test_decodes_field_by_field() -> None:
    """V1: serial 0, version 1.1, sent 2020-10-22 17:13:24, a fire alarm (status bit 1) of
    component 0x000600D9 of system 1/3, described in GB18030 as Ａ区１层呷哺走廊."""
    f = fr.decode(V1)
    assert (f.serial, f.version, f.command) == (0, (1, 1), Command.SEND)
    assert f.time.to_datetime(CST) == dt.datetime(2020, 10, 22, 17, 13, 24, tzinfo=CST)
    assert fr.address_int(f.source) == 0 and f.destination == bytes.fromhex("060504030201")
    u = un.decode(f.data)
    assert u.type == DataType.COMPONENT_STATUS
    (c,) = u.objects
    assert isinstance(c, un.ComponentStatus)
    assert (c.system_type, c.system_address, c.component_type) == (1, 3, 0)
    assert (c.component_address, c.status) == (0x000600D9, 0x0002)
    assert c.description == "Ａ区１层呷哺走廊"
    assert c.time.to_datetime(CST) == dt.datetime(2020, 8, 1, 19, 18, 48, tzinfo=CST)
    assert fr.encode(f) == V1  # and back, byte for byte


def test_vendor_captures_decode() -> None:
    """V2: a photoelectric smoke detector (type 42) in fire alarm, garbage after the NUL of
    its description, an unset object clock; version bytes 10 00. V3: a fault (bit 2). V5:
    the UTD's own status (fault + backup power). V7: a reset at the UTD. V8: a Dahua
    registration with no data unit."""
    f2 = fr.decode(V2)
    assert f2.version == (0x10, 0) and f2.destination.endswith(b"#")  # "#" inside a frame
    (c,) = un.decode(f2.data).objects
    assert isinstance(c, un.ComponentStatus)
    assert (c.component_type, c.status, c.description) == (42, 2, "1号接口板1回路1号")
    (fault,) = un.decode(fr.decode(V3).data).objects
    assert isinstance(fault, un.ComponentStatus)
    assert (fault.component_address, fault.status, fault.description) == (0x000A0037, 4, "")
    (status,) = un.decode(fr.decode(V5).data).objects
    assert status == un.UtdStatus(0x14, TimeLabel(14, 42, 16, 12, 7, 22))
    (op,) = un.decode(fr.decode(V7).data).objects
    assert op == un.UtdOperation(0x01, 1, TimeLabel(10, 42, 16, 12, 7, 22))
    assert fr.decode(V8).data == b""


def test_a_wrong_checksum_truncation_and_bad_markers_are_refused_with_the_reason() -> None:
    """Each refusal names what is wrong, for the dead letter."""
    with pytest.raises(FrameError, match="checksum 0x30, the bytes sum to 0x32"):
        fr.decode(V12)
    with pytest.raises(FrameError, match="truncated: 29 bytes"):
        fr.decode(V8[:29])
    with pytest.raises(FrameError, match="length 48 says 78 bytes, the frame has 77"):
        fr.decode(V1[:-3] + V1[-2:])
    with pytest.raises(FrameError, match="no start marker"):
        fr.decode(b"$$" + V8[2:])
    with pytest.raises(FrameError, match="no end marker"):
        fr.decode(V8[:-2] + b"#!")
    too_long = bytearray(V8)
    too_long[24:26] = (1025).to_bytes(2, "little")
    with pytest.raises(FrameError, match="length 1025: at most 1024"):
        fr.decode(bytes(too_long))


def test_data_units_that_do_not_hold_together_are_refused() -> None:
    """Unknown type flag, no object, a count the bytes do not hold, bytes left over."""
    for data, reason in (
        (b"\x2a\x01\x00", "unknown type flag 42"),
        (b"\x15\x00", "type 21 with no object"),
        (b"\x15\x02" + b"\x00" * 7, "object 2 of 2 needs 7 bytes, 0 are left"),
        (b"\x15\x01" + b"\x00" * 8, "1 bytes after 1 objects"),
        (b"\x16", "1 bytes: a data unit has a type flag and a count"),
    ):
        with pytest.raises(DataUnitError, match=reason):
            un.decode(data)
    with pytest.raises(DataUnitError, match="the field holds 31"):
        un.encode(
            un.unit(
                DataType.COMPONENT_STATUS,
                [un.ComponentStatus(1, 1, 42, 1, 2, "一" * 16, TimeLabel(0, 0, 0, 1, 1, 26))],
            )
        )


def test_time_labels_that_are_no_date_say_so() -> None:
    """An unset clock (all zeros) or 31 February is no time, not a crash."""
    assert TimeLabel(0, 0, 0, 0, 0, 0).to_datetime(CST) is None
    assert TimeLabel(0, 0, 0, 31, 2, 26).to_datetime(CST) is None
    t = dt.datetime(2026, 12, 4, 9, 30, 5, tzinfo=CST)
    assert TimeLabel.of(t).to_datetime(CST) == t


# ---------- round trips ----------

byte = st.integers(0, 255)
labels = st.builds(TimeLabel, byte, byte, byte, byte, byte, byte)
u32 = st.integers(0, 2**32 - 1)
# GB18030 encodes all of Unicode but lone surrogates; a field cuts at its first NUL.
NO_SURROGATES: list[Any] = ["Cs"]
texts = st.text(
    st.characters(exclude_categories=NO_SURROGATES, exclude_characters="\0"), max_size=31
)
descriptions = texts.filter(lambda s: len(s.encode("gb18030")) <= un.DESCRIPTION_LEN)
config_texts = st.text(st.characters(exclude_categories=NO_SURROGATES), max_size=80)

OBJECTS: dict[int, st.SearchStrategy[Any]] = {
    DataType.SYSTEM_STATUS: st.builds(un.SystemStatus, byte, byte, st.integers(0, 0xFFFF), labels),
    DataType.COMPONENT_STATUS: st.builds(
        un.ComponentStatus, byte, byte, byte, u32, st.integers(0, 0xFFFF), descriptions, labels
    ),
    DataType.COMPONENT_ANALOG: st.builds(
        un.ComponentAnalog, byte, byte, byte, u32, byte, st.integers(-32768, 32767), labels
    ),
    DataType.OPERATION: st.builds(un.Operation, byte, byte, byte, byte, labels),
    DataType.SOFTWARE_VERSION: st.builds(un.SoftwareVersion, byte, byte, byte, byte),
    DataType.SYSTEM_CONFIG: st.builds(un.SystemConfig, byte, byte, config_texts),
    DataType.COMPONENT_CONFIG: st.builds(un.ComponentConfig, byte, byte, byte, u32, descriptions),
    DataType.SYSTEM_TIME: st.builds(un.SystemTime, byte, byte, labels),
    DataType.UTD_STATUS: st.builds(un.UtdStatus, byte, labels),
    DataType.UTD_OPERATION: st.builds(un.UtdOperation, byte, byte, labels),
    DataType.UTD_SOFTWARE_VERSION: st.builds(un.UtdSoftwareVersion, byte, byte),
    DataType.UTD_CONFIG: st.builds(un.UtdConfig, config_texts),
    DataType.UTD_TIME: st.builds(un.UtdTime, labels),
    DataType.READ_SYSTEM_STATUS: st.builds(un.ReadSystem, byte, byte),
    DataType.READ_COMPONENT_STATUS: st.builds(un.ReadComponent, byte, byte, u32),
    DataType.READ_COMPONENT_ANALOG: st.builds(un.ReadComponent, byte, byte, u32),
    DataType.READ_OPERATIONS: st.builds(un.ReadRecords, byte, byte, byte, labels),
    DataType.READ_SOFTWARE_VERSION: st.builds(un.ReadSystem, byte, byte),
    DataType.READ_SYSTEM_CONFIG: st.builds(un.ReadSystem, byte, byte),
    DataType.READ_COMPONENT_CONFIG: st.builds(un.ReadComponent, byte, byte, u32),
    DataType.READ_SYSTEM_TIME: st.builds(un.ReadSystem, byte, byte),
    DataType.READ_UTD_STATUS: st.builds(un.ReadUtd, byte),
    DataType.READ_UTD_OPERATIONS: st.builds(un.ReadUtdRecords, byte, labels),
    DataType.READ_UTD_SOFTWARE_VERSION: st.builds(un.ReadUtd, byte),
    DataType.READ_UTD_CONFIG: st.builds(un.ReadUtd, byte),
    DataType.READ_UTD_TIME: st.builds(un.ReadUtd, byte),
    DataType.INIT_UTD: st.builds(un.ReadUtd, byte),
    DataType.SYNC_CLOCK: st.builds(un.SyncClock, labels),
    DataType.DUTY_CHECK: st.builds(un.DutyCheck, byte),
}


def test_every_type_has_a_strategy() -> None:
    """A type added to the codec without a round trip here fails this test."""
    assert set(OBJECTS) == set(un.LAYOUTS) == {int(t) for t in DataType}


@st.composite
def data_units(draw: st.DrawFn) -> DataUnit:
    """A data unit of any type with as many objects as it may hold (up to 5 drawn)."""
    kind = draw(st.sampled_from(sorted(OBJECTS)))
    most = min(un.LAYOUTS[kind].max_count, 5)
    objects = draw(st.lists(OBJECTS[kind], min_size=1, max_size=most))
    return DataUnit(kind, tuple(objects))


@given(data_units())
def test_every_data_unit_round_trips(unit: DataUnit) -> None:
    """encode → decode gives the same unit back, for every type."""
    assert un.decode(un.encode(unit)) == unit


frames = st.builds(
    Frame,
    serial=st.integers(0, 0xFFFF),
    command=byte,
    data=st.binary(max_size=fr.MAX_DATA),
    time=labels,
    source=st.binary(min_size=6, max_size=6),
    destination=st.binary(min_size=6, max_size=6),
    version=st.tuples(byte, byte),
)


@given(frames)
def test_every_frame_round_trips(f: Frame) -> None:
    """encode → decode gives the same frame, whatever its data (markers inside included)."""
    raw = fr.encode(f)
    assert len(raw) == fr.OVERHEAD + len(f.data)
    assert fr.decode(raw) == f


@given(frames, data_units())
def test_a_frame_carrying_a_unit_round_trips(f: Frame, unit: DataUnit) -> None:
    """A whole message: the unit in a frame's data comes back out of the frame's bytes."""
    data = un.encode(unit)
    if len(data) <= fr.MAX_DATA:
        g = Frame(f.serial, Command.SEND, data, f.time, f.source, f.destination, f.version)
        assert un.decode(fr.decode(fr.encode(g)).data) == unit


def test_a_confirmation_echoes_the_serial_and_swaps_the_addresses() -> None:
    """The centre's confirm of V7 (§6.2): same serial, its own time, no data."""
    f = fr.decode(V7)
    now = TimeLabel(1, 2, 3, 4, 12, 26)
    ack = fr.decode(fr.encode(f.reply(Command.CONFIRM, now)))
    assert (ack.serial, ack.command, ack.data, ack.time) == (f.serial, 3, b"", now)
    assert (ack.source, ack.destination) == (f.destination, f.source)


# ---------- what the units say, as events of the contract ----------


def test_a_component_fire_alarm_becomes_a_fire_alarm_event_at_its_loop_and_point() -> None:
    """V2: a smoke detector's fire alarm, loop 1 point 1 (address 01 00 01 00), the panel's
    text; its unset clock (2012) is still a date, taken as it is."""
    r = events.read(un.decode(fr.decode(V2).data), CST)
    (e,) = r.events
    assert (e.kind, e.loop, e.point, e.text) == (EventKind.FIRE_ALARM, 1, 1, "1号接口板1回路1号")
    assert e.at == dt.datetime(2012, 6, 1, 3, 17, 37, tzinfo=CST)


def test_faults_power_and_resets_map_to_their_kinds() -> None:
    """A fault (V3) at loop 10 point 55, with no text: the component type and place say it;
    the UTD's own fault + backup power fault (V5); a reset at the UTD (V7)."""
    (fault,) = events.read(un.decode(fr.decode(V3).data), CST).events
    assert (fault.kind, fault.loop, fault.point) == (EventKind.FAULT, 10, 55)
    assert fault.text == "通用（10回路55号）"
    utd = events.read(un.decode(fr.decode(V5).data), CST).events
    assert [e.kind for e in utd] == [EventKind.FAULT, EventKind.BACKUP_POWER_FAULT]
    (reset,) = events.read(un.decode(fr.decode(V7).data), CST).events
    assert reset.kind == EventKind.RESET


def test_a_status_word_with_several_bits_gives_each_event_once() -> None:
    """Fire alarm + start + feedback on one component; a system's main power, bus fault and
    reset; a component's power fault is a fault (once, with bit 2 set too)."""
    t = TimeLabel(0, 0, 0, 0, 0, 0)  # no date: the gateway uses the time it received it
    comp = un.ComponentStatus(1, 1, 42, 0x00020007, 0b1100010, "3F东侧走廊感烟探测器", t)
    system = un.SystemStatus(1, 1, (1 << 8) | (1 << 10) | (1 << 13), t)
    power = un.ComponentStatus(1, 1, 84, 5, (1 << 2) | (1 << 8), "", t)
    got = events.read(DataUnit(2, (comp, power)), CST).events
    assert [(e.kind, e.loop, e.point) for e in got] == [
        (EventKind.FIRE_ALARM, 2, 7),
        (EventKind.START, 2, 7),
        (EventKind.FEEDBACK, 2, 7),
        (EventKind.FAULT, 0, 5),
    ]
    assert all(e.at is None for e in got)
    sys_events = events.read(DataUnit(1, (system,)), CST).events
    assert [e.kind for e in sys_events] == [
        EventKind.MAIN_POWER_FAULT,
        EventKind.FAULT,
        EventKind.RESET,
    ]
    assert sys_events[0].text == "火灾报警系统（1号）"


def test_a_duty_check_answer_is_told_and_normal_status_says_nothing() -> None:
    """Type 24 with bit 5: someone at the unit answered 查岗; a status word of 0 is no event."""
    t = TimeLabel(5, 4, 3, 2, 12, 26)
    r = events.read(DataUnit(24, (un.UtdOperation(1 << 5, 2, t),)), CST)
    assert r.duty_answer and r.events == []
    quiet = events.read(DataUnit(2, (un.ComponentStatus(1, 1, 42, 1, 0b1, "", t),)), CST)
    assert quiet.events == [] and not quiet.duty_answer
