"""What the bits and codes of GB/T 26875.3-2011 mean, and the events of our contract (v1)
they become.

Status words (standard §8.2.1, figures 6, 7, 9; checked against the standard's figures):
a system's (type 1) and a component's (type 2) share bits 0-7; bit 8 is the system's main
power fault and a component's power fault; bits 9-13 are the system's. The transmission
device's own status byte (type 21) and the operation flags (types 4 and 24) differ. The
component address is four bytes with no split in the standard; the split into loop and point
(high and low 16 bits) is the common vendor reading (dgiot's, after 三江): `loop_point`.
"""

from __future__ import annotations

from dataclasses import dataclass

from devices.catalog import EventKind

# A component's status word, bit → what it reports (bit 0: 1 running, 0 test; bit 7 delay).
COMPONENT_BITS: dict[int, EventKind] = {
    1: EventKind.FIRE_ALARM,  # 火警
    2: EventKind.FAULT,  # 故障
    3: EventKind.SHIELD,  # 屏蔽
    4: EventKind.SUPERVISORY,  # 监管
    5: EventKind.START,  # 启动
    6: EventKind.FEEDBACK,  # 反馈
    8: EventKind.FAULT,  # 电源故障 (the component's power)
}
# A system's status word: the component's bits 1-6, and its own power, bus and reset bits.
SYSTEM_BITS: dict[int, EventKind] = {
    **{b: k for b, k in COMPONENT_BITS.items() if b < 8},
    8: EventKind.MAIN_POWER_FAULT,  # 主电故障
    9: EventKind.BACKUP_POWER_FAULT,  # 备电故障
    10: EventKind.FAULT,  # 总线故障
    13: EventKind.RESET,  # 复位
}
# The transmission device's status byte (type 21).
UTD_BITS: dict[int, EventKind] = {
    1: EventKind.FIRE_ALARM,
    2: EventKind.FAULT,
    3: EventKind.MAIN_POWER_FAULT,
    4: EventKind.BACKUP_POWER_FAULT,
    5: EventKind.FAULT,  # 与监控中心通信信道故障
    6: EventKind.FAULT,  # 监测连接线路故障
}
# Operation flags of a panel (type 4) and of the transmission device (type 24).
OPERATION_BITS: dict[int, EventKind] = {0: EventKind.RESET, 4: EventKind.SELF_TEST}
DUTY_ANSWER_BIT = 5  # type 24: 查岗应答 (type 4: 确认)

# System types (table 4), the common ones.
SYSTEM_TYPES = {
    0: "通用",
    1: "火灾报警系统",
    10: "消防联动控制器",
    11: "消火栓系统",
    12: "自动喷水灭火系统",
    13: "气体灭火系统",
    18: "防烟排烟系统",
    19: "防火门及卷帘系统",
    20: "消防电梯",
    21: "消防应急广播",
    22: "消防应急照明和疏散指示系统",
    23: "消防电源",
    24: "消防电话",
}
# Component types (table 5), the ones a panel mostly reports.
COMPONENT_TYPES = {
    0: "通用",
    1: "火灾报警控制器",
    21: "探测回路",
    22: "火灾显示盘",
    23: "手动火灾报警按钮",
    24: "消火栓按钮",
    25: "火灾探测器",
    30: "感温火灾探测器",
    31: "点型感温火灾探测器",
    40: "感烟火灾探测器",
    41: "点型离子感烟火灾探测器",
    42: "点型光电感烟火灾探测器",
    43: "点型光束感烟火灾探测器",
    44: "吸气式感烟火灾探测器",
    50: "复合式火灾探测器",
    61: "紫外火焰探测器",
    62: "红外火焰探测器",
    84: "模块",
    91: "消防水泵",
    92: "消防水箱",
    95: "喷淋泵",
    96: "水流指示器",
    97: "信号阀",
    98: "报警阀",
    99: "压力开关",
    121: "警报装置",
}


@dataclass(frozen=True, slots=True)
class LoopPoint:
    """Where a component is on its panel: its loop and its point (address) on the loop."""

    loop: int
    point: int


def loop_point(component_address: int) -> LoopPoint:
    """The common reading of the four-byte address: loop in the high 16 bits, point low."""
    return LoopPoint(component_address >> 16, component_address & 0xFFFF)


def kinds(status: int, bits: dict[int, EventKind]) -> list[EventKind]:
    """The event kinds a status word reports, each once, in bit order."""
    out: list[EventKind] = []
    for bit, kind in sorted(bits.items()):
        if status >> bit & 1 and kind not in out:
            out.append(kind)
    return out
