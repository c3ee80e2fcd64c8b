"""The one CPU-feature table (compress.export.environment): /proc/cpuinfo texts parsed into flags, the
groups they mean, and the int8 settings (compress.quantization.isa), the doctor and the bf16
rules all agreeing with it."""

from __future__ import annotations

import pytest

from compress.export.environment import (
    INT8_DOT_PRODUCT,
    ISA_GROUPS,
    NATIVE_BF16,
    has_int8_dot_product,
    has_native_bf16,
    isa_flags,
    parse_cpuinfo,
)
from compress.export.runtimes.precision import cpu_bf16
from compress.quantization.isa import detect_isa, int8_defaults

# Abridged /proc/cpuinfo texts, as Linux prints them (two x86 processors, one ARM core).
SAPPHIRE_RAPIDS = """\
processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse2 avx2 fma avx512f avx512_vnni avx512_bf16 amx_bf16 amx_tile amx_int8
processor\t: 1
model name\t: another name, not read
flags\t\t: fpu
"""
EPYC_ROME = """\
processor\t: 0
model name\t: AMD EPYC 7B12
flags\t\t: fpu sse2 avx2 fma
"""
GRAVITON3 = """\
processor\t: 0
BogoMIPS\t: 2100.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 asimddp sve i8mm bf16
CPU implementer\t: 0x41
"""
# Flag sets the two tables used to disagree on: AMX without its int8 unit, i8mm without sdot.
AMX_BF16_ONLY = frozenset({"avx2", "avx512f", "amx_tile", "amx_bf16"})
I8MM_ONLY = frozenset({"asimd", "i8mm"})


def test_parse_cpuinfo_reads_the_first_cpus_name_and_flags():
    name, flags = parse_cpuinfo(SAPPHIRE_RAPIDS)
    assert name == "Intel(R) Xeon(R) Platinum 8480+"
    assert {"avx512_vnni", "amx_int8", "amx_bf16"} <= flags and "fpu" in flags
    assert parse_cpuinfo(GRAVITON3) == ("", frozenset(GRAVITON3.splitlines()[2].split()[2:]))
    assert parse_cpuinfo("") == ("", frozenset())


@pytest.mark.parametrize(
    ("text", "int8", "bf16", "groups"),
    [
        (SAPPHIRE_RAPIDS, True, True, {"avx512_vnni", "amx", "amx_int8", "amx_bf16"}),
        (EPYC_ROME, False, False, {"avx2", "fma"}),
        (GRAVITON3, True, True, {"neon", "arm_dotprod", "arm_i8mm", "arm_bf16"}),
    ],
    ids=["sapphire-rapids", "epyc-rome", "graviton3"],
)
def test_groups_of_real_cpus(text, int8, bf16, groups):
    _, flags = parse_cpuinfo(text)
    isa = isa_flags(flags)
    assert set(isa) == set(ISA_GROUPS) and groups <= {k for k, v in isa.items() if v}
    assert has_int8_dot_product(flags) is int8
    assert has_native_bf16(flags) is bf16 and (cpu_bf16(flags) is None) is bf16


def test_amx_means_its_own_unit():
    """AMX-BF16 alone is no int8 fast path (AMX-INT8 is), but is native bf16."""
    isa = isa_flags(AMX_BF16_ONLY)
    assert isa["amx"] and isa["amx_bf16"] and not isa["amx_int8"]
    assert not has_int8_dot_product(AMX_BF16_ONLY) and has_native_bf16(AMX_BF16_ONLY)
    settings = int8_defaults(detect_isa(AMX_BF16_ONLY, "x86_64"))
    assert settings.reduce_range is True and "no VNNI" in settings.reason


def test_i8mm_is_an_int8_fast_path_for_quantization_too():
    isa = detect_isa(I8MM_ONLY, "arm64")
    assert isa.arm_i8mm and not isa.arm_dot and isa.name == "ARM i8mm"
    settings = int8_defaults(isa)
    assert settings.label == "S8S8" and "smmla" in settings.reason
    assert detect_isa(parse_cpuinfo(GRAVITON3)[1], "arm64").name == "ARM dot-product + i8mm"


@pytest.mark.parametrize(
    ("flags", "arch"),
    [
        (parse_cpuinfo(SAPPHIRE_RAPIDS)[1], "x86_64"),
        (parse_cpuinfo(EPYC_ROME)[1], "x86_64"),
        (parse_cpuinfo(GRAVITON3)[1], "arm64"),
        (AMX_BF16_ONLY, "x86_64"),
        (I8MM_ONLY, "arm64"),
        (frozenset({"avx2", "avx_vnni"}), "x86_64"),
        (frozenset({"asimd"}), "arm64"),
    ],
)
def test_quantization_and_the_environment_agree_on_int8(flags, arch):
    assert detect_isa(flags, arch).int8_dot_product is has_int8_dot_product(flags)


def test_every_meaning_names_a_group():
    assert set(INT8_DOT_PRODUCT) <= set(ISA_GROUPS) and set(NATIVE_BF16) <= set(ISA_GROUPS)
