"""Pure-Python reader for the BPF Type Format."""

from .layout import Kind
from .types import BTF, Type, Member, Param, EnumValue, VarSecInfo, VOID

__all__ = ["BTF", "Kind", "Type", "Member", "Param", "EnumValue", "VarSecInfo", "VOID"]
