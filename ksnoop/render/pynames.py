"""Fresh names for generated Python code (``textgen`` and the JSON consumer's
generator): one counter, one namespace of constants the code refers to."""


class PyNames:
    """Mixin: the generator sets ``self.ns`` (the generated code's globals)
    and ``self.n = 0`` in its ``__init__``."""

    def fresh(self, prefix):
        self.n += 1
        return f"{prefix}{self.n}"

    def const(self, value, prefix="K"):
        """A fresh global of the generated code, bound to ``value``."""
        name = self.fresh(prefix)
        self.ns[name] = value
        return name
