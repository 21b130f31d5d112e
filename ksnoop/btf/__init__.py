"""Pure-Python reader for the BPF Type Format."""

from .format import Kind
from .types import BTF, VOID, EnumValue, Member, Param, Type, VarSecInfo

__all__ = ["BTF", "Kind", "Type", "Member", "Param", "EnumValue", "VarSecInfo", "VOID"]
