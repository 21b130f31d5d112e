"""ksnoop: trace kernel function arguments and return values, typed by BTF."""

__version__ = "0.1.0"
