"""The only module that reads the running kernel's files: BTF, kallsyms, ELF.

Everything above it takes a ``Kernel`` (or a fake with the same methods), so
the rest of ksnoop can be tested without root or a live kernel.
"""

import os
import stat

from ..btf import BTF
from ..errors import BTFError, KsnoopError
from .kallsyms import Kallsyms

SYS_BTF = "/sys/kernel/btf"
KALLSYMS = "/proc/kallsyms"


MAX_BTF_FILE = 1 << 30  # a vmlinux with debug info is a few hundred MiB


def read_file(path, what, regular=False, limit=None):
    """The bytes of ``path``.  ``regular``: refuse anything but a regular file
    (a FIFO would block, /dev/zero never ends); ``limit``: refuse bigger files."""
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer before we can refuse it.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(fd)
            if regular and not stat.S_ISREG(st.st_mode):
                raise KsnoopError(f"{path}: not a regular file ({what})")
            if limit is not None and st.st_size > limit:
                raise KsnoopError(f"{path}: too big ({st.st_size} bytes, at most {limit}) ({what})")
            os.set_blocking(fd, True)
            data = f.read() if limit is None else f.read(limit + 1)
            if limit is not None and len(data) > limit:
                raise KsnoopError(f"{path}: too big (more than {limit} bytes) ({what})")
            return data
    except FileNotFoundError:
        raise KsnoopError(f"{path}: no such file ({what})") from None
    except PermissionError:
        raise KsnoopError(f"{path}: permission denied ({what}); try as root") from None
    except IsADirectoryError:
        raise KsnoopError(f"{path}: is a directory ({what})") from None
    except OSError as e:
        raise KsnoopError(f"{path}: {e.strerror} ({what})") from None


def possible_cpus(path="/sys/devices/system/cpu/possible"):
    """Number of possible CPU ids (one more than the highest), e.g. "0-3,8" -> 9."""
    try:
        with open(path) as f:
            text = f.read().strip()
        return 1 + max(int(part.split("-")[-1]) for part in text.split(",") if part)
    except (OSError, ValueError):
        return os.cpu_count() or 1


def btf_from_elf(path, data):
    """The .BTF section of an ELF file (a vmlinux or a .ko)."""
    import io

    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile

    try:
        elf = ELFFile(io.BytesIO(data))
        sec = elf.get_section_by_name(".BTF")
    except (ELFError, ValueError, KeyError) as e:
        raise BTFError(f"{path}: unreadable ELF file: {e}") from None
    if sec is None:
        raise BTFError(f"{path}: ELF file has no .BTF section")
    return sec.data()


def load_btf_file(path, base=None, name=None):
    """BTF from a file: raw BTF, or an ELF file with a .BTF section.  Errors
    name the file as given (``name`` overrides, e.g. "vmlinux" for sysfs)."""
    data = read_file(path, "BTF", regular=True, limit=MAX_BTF_FILE)
    if data[:4] == b"\x7fELF":
        data = btf_from_elf(path, data)
    return BTF(data, base=base, name=name or path)


class Kernel:
    """The running kernel (or a BTF file standing in for its types)."""

    def __init__(self, btf_path=None, sys_btf=SYS_BTF, kallsyms_path=KALLSYMS):
        self.btf_path = btf_path
        self.sys_btf = sys_btf
        self.kallsyms_path = kallsyms_path
        self._vmlinux = None
        self._modules = {}
        self._kallsyms = None

    @property
    def vmlinux(self):
        if self._vmlinux is None:
            path = self.btf_path or os.path.join(self.sys_btf, "vmlinux")
            if self.btf_path is None and not os.path.exists(path):
                raise BTFError(f"{path} not found: this kernel has no BTF "
                               "(CONFIG_DEBUG_INFO_BTF); use --btf FILE")
            self._vmlinux = load_btf_file(path)
        return self._vmlinux

    def module_btf(self, module):
        """Split BTF of a loaded module, on top of vmlinux BTF."""
        if module not in self._modules:
            path = os.path.join(self.sys_btf, module)
            if not os.path.exists(path):
                raise BTFError(f"module {module} has no BTF ({path} missing)")
            self._modules[module] = load_btf_file(path, base=self.vmlinux)
        return self._modules[module]

    @property
    def kallsyms(self):
        if self._kallsyms is None:
            self._kallsyms = Kallsyms(read_file(self.kallsyms_path, "kernel symbols"))
        return self._kallsyms

    def possible_cpus(self):
        return possible_cpus()

    @property
    def live(self):
        """True when types come from the running kernel (not a --btf file)."""
        return self.btf_path is None
