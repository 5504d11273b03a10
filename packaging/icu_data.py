"""A smaller ICU data library for the bundles: Qt's ``libicudata.so.NN`` (31 MiB) cut to ~4 MiB.

QtCore links ICU, whose data library holds every locale's collation, calendars, currency
and unit names, converters for legacy encodings and dictionaries for CJK and Thai word
breaking. Qt keeps its own locale (CLDR) and Unicode tables and shapes text with its own
HarfBuzz; it asks ICU only for collation (QCollator), locale-aware case mapping and legacy
text codecs, none of which Specula uses beyond the root locale. The rule of what stays is
``bundle_config.icu_item_kept``.

How: the data is one symbol, ``icudtNN_dat``, in the library's read-only data. It is cut
out, stripped of the dropped items with ICU's own ``icupkg``, and linked back into a
library of the same soname with ``gcc`` (an ``.incbin``). Both tools are Debian packages
(``icu-devtools``, ``gcc``); without them the full data is kept and the build says why.
"""
from __future__ import annotations

import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bundle_config import icu_item_kept  # noqa: E402

ICUDATA_NAME = re.compile(r"(^|/)libicudata\.so\.(\d+)$")


def _blob_location(lib: Path, symbol: str) -> tuple[int, int]:
    """(file offset, size) of the data symbol ``symbol`` in the ELF library ``lib``."""
    out = subprocess.run(["nm", "-D", "-S", str(lib)], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[3] == symbol:
            vaddr, size = int(parts[0], 16), int(parts[1], 16)
            break
    else:
        raise RuntimeError(f"{lib.name} has no symbol {symbol}")
    # the symbol is a virtual address: the PT_LOAD segment holding it maps it to a file offset
    data = lib.read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise RuntimeError(f"{lib.name} is not a 64-bit little-endian ELF file")
    phoff, = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    for i in range(phnum):
        p_type, _flags, p_offset, p_vaddr, _paddr, p_filesz = struct.unpack_from("<IIQQQQ", data, phoff + i * phentsize)
        if p_type == 1 and p_vaddr <= vaddr and vaddr + size <= p_vaddr + p_filesz:
            return vaddr - p_vaddr + p_offset, size
    raise RuntimeError(f"{symbol} of {lib.name} lies in no loaded segment")


def missing_tools() -> list[str]:
    """The tools (with the Debian package that has each) that trimming needs and this machine lacks."""
    need = {"icupkg": "icu-devtools", "gcc": "gcc", "nm": "binutils"}
    return [f"{tool} (apt-get install {pkg})" for tool, pkg in need.items() if shutil.which(tool) is None]


def trim_icu_data(lib: Path, workdir: Path) -> tuple[Path, str]:
    """Build a trimmed copy of ICU's data library ``lib`` in ``workdir``.

    Returns (path of the new library, one line saying what was kept); raises RuntimeError
    with the reason when it cannot (the caller then keeps the original).
    """
    match = ICUDATA_NAME.search(lib.name)
    if not match:
        raise RuntimeError(f"{lib.name} is not an ICU data library (libicudata.so.NN)")
    lacking = missing_tools()
    if lacking:
        raise RuntimeError(f"missing {', '.join(lacking)}")
    major = match.group(2)
    symbol = f"icudt{major}_dat"
    pkg = f"icudt{major}l"  # the package name inside the data (l: little-endian)
    workdir.mkdir(parents=True, exist_ok=True)
    offset, size = _blob_location(lib, symbol)
    # icupkg takes the package name from the file name: the full and the small package
    # have the same name, in two folders
    (workdir / "full").mkdir(exist_ok=True)
    full = workdir / "full" / f"{pkg}.dat"
    full.write_bytes(lib.read_bytes()[offset:offset + size])

    listed = subprocess.run(["icupkg", "-l", str(full)], capture_output=True, text=True)
    if listed.returncode != 0:
        raise RuntimeError(f"icupkg cannot read the data of {lib.name}: {listed.stderr.strip()[:200]}")
    items = [line.strip() for line in listed.stdout.splitlines() if line.strip()]
    dropped = [item for item in items if not icu_item_kept(item)]
    if not dropped:
        raise RuntimeError("nothing to drop")
    removal = workdir / "icu-removed.txt"
    removal.write_text("\n".join(dropped) + "\n", encoding="utf-8")
    small = workdir / f"{pkg}.dat"
    small.unlink(missing_ok=True)
    # --ignore-deps: a kept item may name a dropped one (a locale's collation its parent);
    # ICU then falls back to the root locale, which is what we keep
    cut = subprocess.run(["icupkg", "--ignore-deps", "-r", str(removal), str(full), str(small)],
                         capture_output=True, text=True)
    if cut.returncode != 0 or not small.is_file():
        raise RuntimeError(f"icupkg failed: {(cut.stderr or cut.stdout).strip()[:300]}")

    # the data symbol must be 16-byte aligned, as ICU's own build makes it
    asm = workdir / "icudata.S"
    asm.write_text(
        f'\t.section .rodata\n\t.globl {symbol}\n\t.type {symbol}, @object\n\t.balign 16\n'
        f'{symbol}:\n\t.incbin "{small.name}"\n\t.size {symbol}, . - {symbol}\n'
        '\t.section .note.GNU-stack,"",@progbits\n',
        encoding="utf-8",
    )
    out = workdir / lib.name
    built = subprocess.run(
        ["gcc", "-shared", "-nostdlib", f"-Wl,-soname,{lib.name}", "-o", str(out), asm.name],
        cwd=workdir, capture_output=True, text=True,
    )
    if built.returncode != 0:
        raise RuntimeError(f"gcc failed: {built.stderr.strip()[:300]}")
    # read it back: the new library must hold the smaller package under the same symbol
    new_offset, new_size = _blob_location(out, symbol)
    if out.read_bytes()[new_offset:new_offset + new_size] != small.read_bytes():
        raise RuntimeError("the rebuilt library does not hold the trimmed data")
    note = (f"ICU data {size / 2**20:.1f} -> {new_size / 2**20:.1f} MiB "
            f"({len(items) - len(dropped)} of {len(items)} items kept)")
    return out, note


def with_trimmed_icu(entries: list[tuple], workdir: Path) -> tuple[list[tuple], str]:
    """The Analysis binaries with ICU's data library replaced by a trimmed copy, and a note.

    Only the library itself (typecode BINARY) is replaced; PyInstaller's symlinks to it
    follow. When trimming is not possible the entry stays as it was and the note says why.
    """
    out: list[tuple] = []
    note = "ICU data: no libicudata in the bundle"
    for entry in entries:
        dest, src, typecode = entry[0], entry[1], entry[2]
        if typecode == "BINARY" and ICUDATA_NAME.search(dest.replace("\\", "/")):
            try:
                trimmed, note = trim_icu_data(Path(src), workdir)
            except (RuntimeError, OSError, subprocess.CalledProcessError) as exc:
                note = f"ICU data NOT trimmed, 27 MiB more: {exc}"
            else:
                entry = (dest, str(trimmed), typecode)
        out.append(entry)
    return out, note
