"""Checks on a built bundle that need no display: libraries its binaries cannot find, its size.

``missing_libraries`` runs ``ldd`` on binaries of the bundle with the bundle's own folders
on the search path, as the bundle's loader sees them: a library reported "not found" is
neither in the bundle nor on this machine, so the binary cannot load there. The X11
platform plugin (``libqxcb.so``) is the case that bit us: its ``libxcb-icccm.so.4`` and
``libxcb-keysyms.so.1`` were on no build machine, so PyInstaller could not bundle them and
the bundle could not open a window on a real X server. ``X11_DLOPENED`` lists what Qt's
xcb plugin loads at run time without linking it (ldd cannot see those).
"""
from __future__ import annotations

import mmap
import os
import posixpath
import struct
import subprocess
from pathlib import Path
from typing import Iterable, Optional

# the X11 plugin and what must load with it; checked on every build (the others are reported)
X11_PLUGIN = "PySide6/Qt/plugins/platforms/libqxcb.so"
# Qt's xcb plugin loads this with dlopen (since Qt 6.5 it refuses to start without it)
X11_DLOPENED = ("libxcb-cursor.so.0",)
# what the X11 plugin may take from the target machine rather than the bundle: the C
# library, the GL/EGL dispatch libraries (they must be the machine's, to reach its GPU
# driver; PyInstaller never bundles them) and libxcb itself, which every X11 session has.
# Anything else it needs must travel in the bundle: libxcb-icccm and libxcb-keysyms are
# missing on many desktops.
X11_SYSTEM_OK = (
    "libc.so.6", "libm.so.6", "libdl.so.2", "libpthread.so.0", "librt.so.1", "ld-linux-x86-64.so.2",
    "libGL.so.1", "libEGL.so.1", "libGLX.so.0", "libGLdispatch.so.0", "libOpenGL.so.0", "libxcb.so.1",
)
# Debian packages for the libraries that were missing on build machines (for the message)
DEBIAN_PACKAGES = {
    "libxcb-icccm.so.4": "libxcb-icccm4", "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-cursor.so.0": "libxcb-cursor0", "libxcb-image.so.0": "libxcb-image0",
    "libxcb-render-util.so.0": "libxcb-render-util0", "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libxcb-xinerama.so.0": "libxcb-xinerama0", "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-shape.so.0": "libxcb-shape0", "libxcb-xkb.so.1": "libxcb-xkb1", "libEGL.so.1": "libegl1",
    "libGL.so.1": "libgl1", "libfontconfig.so.1": "libfontconfig1", "libxkbcommon.so.0": "libxkbcommon0",
}


def is_elf(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(4) == b"\x7fELF"
    except OSError:
        return False


def elf_needed(path: Path) -> list[str]:
    """The DT_NEEDED sonames of a 64-bit little-endian ELF file, read without binutils."""
    with open(path, "rb") as fh:
        try:
            data = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        except ValueError:  # an empty file
            return []
    with data:
        return _needed(data, path.name)


def _needed(data: "mmap.mmap", name: str) -> list[str]:
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise ValueError(f"{name}: not a 64-bit little-endian ELF file")
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    for _name, sh_type, _flags, _addr, offset, size, link, _info, _align, entsize in sections:
        if sh_type != 6:  # SHT_DYNAMIC
            continue
        strtab_offset = sections[link][4]
        needed = []
        for pos in range(offset, offset + size, entsize or 16):
            tag, value = struct.unpack_from("<qQ", data, pos)
            if tag == 0:
                break
            if tag == 1:  # DT_NEEDED: an offset into the dynamic string table
                end = data.find(b"\0", strtab_offset + value)
                needed.append(data[strtab_offset + value:end].decode())
        return needed
    return []


def library_dirs(bundle: Path) -> list[Path]:
    """Folders of the bundle that hold shared libraries (the bundle's own search path, in effect)."""
    dirs = {p.parent for p in bundle.rglob("*.so*") if p.is_file()}
    return sorted(dirs, key=lambda d: (len(d.parts), str(d)))


def ldd_missing(binary: Path, search: Iterable[Path]) -> list[str]:
    """Sonames ``ldd`` reports "not found" for ``binary`` with ``search`` first on the path."""
    env = dict(os.environ, LD_LIBRARY_PATH=os.pathsep.join(str(d) for d in search))
    out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, env=env).stdout
    return sorted({line.split("=>")[0].strip() for line in out.splitlines() if "not found" in line})


def ldd_from_system(binary: Path, search: Iterable[Path], bundle: Path) -> list[str]:
    """Libraries ``binary`` takes from the machine rather than the bundle (what a target must have)."""
    env = dict(os.environ, LD_LIBRARY_PATH=os.pathsep.join(str(d) for d in search))
    out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, env=env).stdout
    found = []
    for line in out.splitlines():
        if "=>" not in line or "not found" in line:
            continue
        name, _, rest = line.partition("=>")
        target = os.path.normpath(rest.strip().split(" (")[0])
        # the path as the loader found it, links not followed: a bundle's own links stay inside it
        if target and not target.startswith(str(bundle) + os.sep):
            found.append(name.strip())
    return sorted(set(found))


def x11_problems(bundle: Path) -> tuple[list[str], list[str]]:
    """(problems, libraries taken from the machine) for the X11 plugin of the bundle at ``bundle``.

    A problem names the missing library and the Debian package that has it; empty when
    ``libqxcb.so`` and everything it links or loads is in the bundle or on this machine.
    """
    internal = bundle / "_internal" if (bundle / "_internal").is_dir() else bundle
    plugin = internal / X11_PLUGIN
    if not plugin.is_file():
        return [f"{X11_PLUGIN} is not in the bundle (QT_PLUGINS_KEPT / QT_PLATFORMS_KEPT)"], []
    search = library_dirs(internal)
    from_system = ldd_from_system(plugin, search, internal)
    # not found anywhere, taken from this machine though a target may lack it, or loaded
    # at run time and not in the bundle: each must be bundled
    missing = ldd_missing(plugin, search)
    missing += [lib for lib in from_system if lib not in X11_SYSTEM_OK]
    missing += [lib for lib in X11_DLOPENED if not any((d / lib).exists() for d in search)]
    problems = [
        f"{lib} (install {DEBIAN_PACKAGES[lib]} on the build machine so that PyInstaller bundles it)"
        if lib in DEBIAN_PACKAGES else f"{lib} (not in the bundle)"
        for lib in sorted(set(missing))
    ]
    return problems, from_system


def unresolved_in_bundle(bundle: Path, skip: Optional[Iterable[str]] = None) -> dict[str, list[str]]:
    """Every ELF file of the bundle with libraries that cannot be found (informative: some are optional plugins)."""
    internal = bundle / "_internal" if (bundle / "_internal").is_dir() else bundle
    search = library_dirs(internal)
    skipped = tuple(skip or ())
    out: dict[str, list[str]] = {}
    for path in sorted(internal.rglob("*.so*")):
        rel = path.relative_to(internal).as_posix()
        if path.is_symlink() or not path.is_file() or rel.startswith(skipped) or not is_elf(path):
            continue
        missing = ldd_missing(path, search)
        if missing:
            out[rel] = missing
    return out


def prune_orphans(before: list[tuple], after: list[tuple]) -> tuple[list[tuple], list[str]]:
    """``after`` (PyInstaller binaries, filtered) without the libraries only dropped binaries needed.

    PyInstaller collects a binary's dependencies during the Analysis, before the specs
    filter anything: dropping Qt's GTK platform theme left the glib, gio, cairo and pango
    it had pulled in. A library goes when it was reached, through DT_NEEDED, from the roots
    of ``before`` and is no longer reached from those roots that stay. Roots: extension
    modules, plugins, and whatever no collected binary links to (kept as PyInstaller chose
    them, since something may load them by name). Returns (entries, dropped names).
    """
    def target(entry: tuple) -> str:
        dest, src, typecode = entry[0], entry[1], entry[2]
        if typecode == "SYMLINK":  # src: the link's target, relative to the link's folder
            return posixpath.normpath(posixpath.join(posixpath.dirname(dest), src))
        return dest

    files = {e[0]: e for e in before if e[2] != "SYMLINK"}
    by_name: dict[str, str] = {}
    for e in before:
        by_name.setdefault(posixpath.basename(e[0]), target(e))
    edges: dict[str, list[str]] = {}
    for dest, entry in files.items():
        try:
            needed = elf_needed(Path(entry[1])) if is_elf(Path(entry[1])) else []
        except (OSError, ValueError, struct.error):
            needed = []
        edges[dest] = [by_name[n] for n in needed if n in by_name and by_name[n] != dest]
    linked_to = {d for deps in edges.values() for d in deps}
    roots = {d for d, e in files.items() if e[2] == "EXTENSION" or "/plugins/" in d or d not in linked_to}

    def reach(start: set[str], allowed: set[str]) -> set[str]:
        seen: set[str] = set()
        todo = [d for d in start if d in allowed]
        while todo:
            d = todo.pop()
            if d in seen:
                continue
            seen.add(d)
            todo.extend(n for n in edges.get(d, []) if n in allowed)
        return seen

    everything = set(files)
    kept_files = {target(e) for e in after}
    reached_before = reach(roots, everything)
    reached_after = reach(roots & kept_files, kept_files)
    orphans = (reached_before & kept_files) - reached_after
    kept = [e for e in after if target(e) not in orphans]
    return kept, sorted(orphans)
