"""kallsyms parsing and lookups (fake text: no root needed)."""

import pytest

from ksnoop.errors import SymbolError
from ksnoop.kernel.kallsyms import Kallsyms, parse_line

TEXT = """\
ffffffff81000000 T _stext
ffffffff81ffe440 T ip_send_skb
ffffffff81ffe500 t ip_send_skb_helper
ffffffff816b52b0 t do_sys_openat2
ffffffff81200000 t cleanup_one
ffffffff81300000 t cleanup_one
ffffffffc0001000 t dummy_get_stats64\t[dummy]
ffffffffc0002000 t cleanup_module\t[dummy]
ffffffffc0003000 t cleanup_module\t[loop]
ffffffff82000000 D some_data
"""


def test_parse_line():
    s = parse_line("ffffffffc0001000 t dummy_get_stats64\t[dummy]")
    assert (s.addr, s.kind, s.name, s.module) == (0xffffffffc0001000, "t", "dummy_get_stats64", "dummy")
    assert parse_line("garbage") is None
    assert parse_line("zzzz T x") is None


def test_exact_name_only():
    k = Kallsyms(TEXT)
    assert [s.addr for s in k.lookup("ip_send_skb")] == [0xffffffff81ffe440]
    assert k.lookup("ip_send") == []
    assert k.lookup("some_data") == []  # data, not a function
    assert k.function("dummy_get_stats64").module == "dummy"


def test_ambiguous_static_functions_are_refused_with_places():
    k = Kallsyms(TEXT)
    with pytest.raises(SymbolError) as e:
        k.function("cleanup_one")
    assert "ambiguous" in str(e.value)
    assert "0xffffffff81200000" in str(e.value) and "0xffffffff81300000" in str(e.value)
    with pytest.raises(SymbolError) as e:
        k.function("cleanup_module")
    assert "[dummy]" in str(e.value) and "[loop]" in str(e.value)


def test_missing():
    with pytest.raises(SymbolError, match="not in /proc/kallsyms"):
        Kallsyms(TEXT).function("nope")
