"""Bit-packed pixels for the masks nobody is working on, and the few kept unpacked.

A ``Mask`` holds its pixels either as a bool array (one byte a pixel: what edits and
readers of ``Mask.array`` need) or packed, eight pixels a byte. An editor with hundreds
of instances on a 25-megapixel photo works on one or two at a time, so all but the
recently used ones are packed: the masks then cost an eighth of their boxes.

``HotSet`` is that "recently used": masks whose array was asked for, made or edited,
most recent last. When the unpacked bytes pass ``HOT_BYTES`` the oldest are packed,
but never the ``HOT_KEEP`` most recent (the mask a brush stroke is painting must not be
packed and unpacked between two dabs because a few neighbours were read meanwhile).

Packed rows are ``np.packbits(row, bitorder="little")``: row ``y`` of the mask is
``bits[y]``, so a box of it unpacks by itself (``unpack_box``) without the rest.
"""
from __future__ import annotations

import os
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

HOT_BYTES = 1 << 20  # unpacked bytes kept before the least recently used masks are packed
HOT_KEEP = 8  # the most recently used masks stay unpacked whatever their size


class Packed(NamedTuple):
    """Pixels of an (h, w) bool array, eight a byte per row. Never written in place, so
    two masks (a copy and its original) may share one."""

    bits: np.ndarray  # (h, ceil(w / 8)) uint8
    width: int

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.bits.shape[0]), self.width

    @property
    def nbytes(self) -> int:
        return int(self.bits.nbytes)


def pack(array: np.ndarray) -> Packed:
    bits = np.packbits(np.asarray(array, dtype=bool), axis=1, bitorder="little")
    bits.setflags(write=False)
    return Packed(bits, int(array.shape[1]))


def unpack(packed: Packed) -> np.ndarray:
    h, w = packed.shape
    if h == 0 or w == 0:
        return np.zeros((h, w), bool)
    return np.unpackbits(packed.bits, axis=1, count=w, bitorder="little").view(bool)


# set bits of each byte value (numpy 1.26, the floor, has no ``bitwise_count``)
_POPCOUNT = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1).sum(axis=1).astype(np.uint8)


def count(packed: Packed) -> int:
    """Set pixels (the padding bits of each row are 0)."""
    return int(_POPCOUNT[packed.bits].sum(dtype=np.int64))


def unpack_box(packed: Packed, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
    """Rows ``r0:r1`` and columns ``c0:c1`` (inside the array) as a new bool array: only the
    bytes that hold them are unpacked."""
    if r1 <= r0 or c1 <= c0:
        return np.zeros((max(0, r1 - r0), max(0, c1 - c0)), bool)
    b0 = c0 // 8
    part = np.unpackbits(packed.bits[r0:r1, b0 : (c1 + 7) // 8], axis=1, bitorder="little")
    return part[:, c0 - 8 * b0 : c1 - 8 * b0].view(bool)


class HotSet:
    """The unpacked masks, least recently used first (held weakly: a mask that dies
    leaves by itself). ``lock`` also guards a mask's in-place edits, so that a thread
    making masks (a proposer's worker) cannot pack one between the moment an edit
    takes its array and the moment it writes."""

    def __init__(self, max_bytes: int = HOT_BYTES, keep: int = HOT_KEEP):
        self.max_bytes = max_bytes
        self.keep = keep
        self.lock = threading.RLock()
        self._entries: OrderedDict[int, tuple[weakref.ref, int]] = OrderedDict()
        self._bytes = 0
        # keys of masks that died; a weakref callback only appends here (it may run in the
        # middle of an OrderedDict operation), the next ``touch`` takes them out
        self._dead: list[int] = []
        # a child forked while another thread held the lock would wait on it forever
        os.register_at_fork(after_in_child=self._new_lock)

    def _new_lock(self) -> None:
        self.lock = threading.RLock()

    @property
    def nbytes(self) -> int:
        """Unpacked bytes of the masks in the set (dead ones not yet taken out included)."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def touch(self, mask: Any, nbytes: int, freeze: Callable[[Any], None]) -> None:
        """``mask`` (``nbytes`` unpacked) was just used: move it to the recent end, then
        pack (``freeze``) the oldest while the set is over its budget."""
        with self.lock:
            self._drop_dead()
            key = id(mask)
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            dead = self._dead
            self._entries[key] = (weakref.ref(mask, lambda _r, k=key: dead.append(k)), nbytes)
            self._bytes += nbytes
            while self._bytes > self.max_bytes and len(self._entries) > self.keep:
                _, (ref, size) = self._entries.popitem(last=False)
                self._bytes -= size
                victim = ref()
                if victim is not None:
                    freeze(victim)

    def _drop_dead(self) -> None:
        while self._dead:
            key = self._dead.pop()
            entry = self._entries.get(key)
            # the id may already belong to a new mask: only a dead reference goes
            if entry is not None and entry[0]() is None:
                del self._entries[key]
                self._bytes -= entry[1]
