"""The `json` style: one JSON value per rendered object.

- structs and unions: objects keyed by member name; the members of an
  anonymous struct/union member are merged into the enclosing object (as C
  lets you name them); an anonymous member that is not an aggregate (cannot
  happen in C) would be keyed ``"<anon N>"``;
- integers: numbers, exact at any width (64- and 128-bit included); bools
  ``true``/``false``; bitfields as numbers of their declared type;
- enums: the enumerator's name, or the number when no enumerator matches;
- pointers: ``"0x..."`` hex strings (never dereferenced);
- char arrays: strings (bytes up to the first NUL, decoded by
  ``escape.json_string``: UTF-8, each invalid byte as the four characters
  ``\\xNN``, as in trace output); other arrays: lists; floats: numbers
  (non-finite as strings);
- nothing is zero-suppressed;
- truncated data: members not in the capture are left out, scalars that are
  missing entirely are ``null``, and a truncated top-level object gets
  ``"__truncated__": {"have": N, "size": M}``.

The text is ``escape.json_dumps``'s: compact and ASCII only.
"""

import math

from . import values as D
from .escape import json_dumps, json_string


def to_python(node):
    """The JSON-able Python value of a decoded node."""
    if isinstance(node, D.Record):
        out = {}
        for i, (name, child) in enumerate(node.fields):
            if isinstance(child, D.Missing):
                continue
            value = to_python(child)
            if name:
                out[name] = value
            elif isinstance(value, dict):
                for k, v in value.items():
                    out.setdefault(k, v)
            else:
                out[f"<anon {i}>"] = value
        return out
    if isinstance(node, D.Array):
        return [to_python(e) for e in node.elems if not isinstance(e, D.Missing)]
    if isinstance(node, D.Int):
        return bool(node.value) if node.is_bool else node.value
    if isinstance(node, D.Enum):
        return node.name if node.name is not None else node.value
    if isinstance(node, D.Ptr):
        return "0x%x" % node.value
    if isinstance(node, D.String):
        return json_string(node.raw)
    if isinstance(node, D.Float):
        return node.value if math.isfinite(node.value) else str(node.value)
    return None


def render_json(node, have=None, size=None):
    value = to_python(node)
    if have is not None and size is not None and have < size and isinstance(value, dict):
        value["__truncated__"] = {"have": max(have, 0), "size": size}
    return json_dumps(value)
