"""Which int8 instructions this CPU has, and the onnxruntime int8 settings that suit them.

x86 VNNI multiplies u8 x s8 straight into 32-bit sums; AVX2/AVX-512 without VNNI go through
`vpmaddubsw`, whose 16-bit sums saturate with full-range U8S8 (onnxruntime's remedy:
`reduce_range`); ARM dot products have no such problem. The flags are read from
compress.export.environment's table; the choice and its reason go into the card.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Isa:
    """The int8-relevant instruction sets of this CPU."""

    arch: str  # x86_64, arm64 or other
    avx2: bool = False
    avx512: bool = False
    vnni: bool = False  # AVX512-VNNI or AVX-VNNI
    amx_int8: bool = False
    arm_dot: bool = False  # ARMv8.2 dot product (asimddp)
    arm_i8mm: bool = False  # ARMv8.6 int8 matrix multiply (smmla)

    @property
    def name(self) -> str:
        """Short label: 'x86 AVX-512 + VNNI', 'x86 AVX2 (no VNNI)', 'ARM dot-product', ..."""
        if self.arch == "x86_64":
            base = "AVX-512" if self.avx512 else "AVX2" if self.avx2 else "SSE"
            extra = " + VNNI + AMX" if self.amx_int8 else " + VNNI" if self.vnni else " (no VNNI)"
            return f"x86 {base}{extra}"
        if self.arch == "arm64":
            units = [u for u, on in (("dot-product", self.arm_dot), ("i8mm", self.arm_i8mm)) if on]
            return f"ARM {' + '.join(units)}" if units else "ARM (no dot-product)"
        return self.arch

    @property
    def int8_dot_product(self) -> bool:
        """int8 products summed in 32 bits without saturation (compress.export.environment's
        INT8_DOT_PRODUCT): VNNI, AMX-INT8, ARM dot product or i8mm."""
        return self.vnni or self.amx_int8 or self.arm_dot or self.arm_i8mm

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "name": self.name}


@dataclass(frozen=True)
class Int8Settings:
    """Activation/weight types and reduce_range for onnxruntime, with the reason."""

    activation_type: str  # uint8 | int8
    weight_type: str  # int8 | uint8
    reduce_range: bool
    reason: str

    @property
    def label(self) -> str:
        letter = {"uint8": "U", "int8": "S"}
        a, w = letter[self.activation_type], letter[self.weight_type]
        return f"{a}8{w}8" + (" reduce_range" if self.reduce_range else "")

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "label": self.label}


def detect_isa(flags: frozenset[str] | None = None, arch: str | None = None) -> Isa:
    """This CPU's int8-relevant instruction sets, from compress.export.environment's table;
    `flags`/`arch` for tests."""
    from compress.export.environment import cpu_arch, isa_flags

    arch = arch or cpu_arch()
    has = isa_flags(flags)
    if arch == "x86_64":
        return Isa(
            arch=arch,
            avx2=has["avx2"],
            avx512=has["avx512"],
            vnni=has["avx512_vnni"] or has["avx_vnni"],
            amx_int8=has["amx_int8"],
        )
    if arch == "arm64":
        return Isa(arch=arch, arm_dot=has["arm_dotprod"], arm_i8mm=has["arm_i8mm"])
    return Isa(arch=arch)


def int8_defaults(isa: Isa) -> Int8Settings:
    """The documented-good int8 combination for `isa` (tune=True measures the others too)."""
    dot = isa.int8_dot_product
    if isa.arch == "x86_64":
        why = (
            "VNNI multiplies u8 x s8 into 32-bit sums without saturation, so full-range U8S8 is "
            "both accurate and the fastest kernel"
            if dot
            else "U8S8 runs on vpmaddubsw, whose 16-bit sums can saturate; reduce_range (7-bit "
            "weights) is onnxruntime's documented remedy"
        )
        return Int8Settings("uint8", "int8", not dot, f"{isa.name}: {why}")
    why = (
        f"{'sdot' if isa.arm_dot else 'smmla'} computes s8 x s8 without saturation; S8S8 is "
        "onnxruntime's default for QDQ"
        if isa.arch == "arm64" and dot
        else "no known int8 instructions; onnxruntime's QDQ default S8S8 (expect int8 to be "
        "slower than fp32 here)"
    )
    return Int8Settings("int8", "int8", False, f"{isa.name}: {why}")


def int8_candidates(isa: Isa) -> list[Int8Settings]:
    """The few settings `tune` tries: the ISA default first, then the usual alternatives."""
    default = int8_defaults(isa)
    others = [
        Int8Settings("uint8", "int8", False, "candidate: U8S8 full range"),
        Int8Settings("uint8", "int8", True, "candidate: U8S8 reduce_range"),
        Int8Settings("int8", "int8", False, "candidate: S8S8 (onnxruntime's QDQ default)"),
        Int8Settings("uint8", "uint8", False, "candidate: U8U8 (no saturation anywhere)"),
    ]
    return [default] + [c for c in others if c.label != default.label]
