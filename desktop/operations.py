"""Mask operations on the selection, each pushed as one undo command."""
from __future__ import annotations

from annotation.delta import MaskDelta
from annotation.document import Instance, InstanceState
from annotation.mask import Mask, union_box
from desktop.commands import ChangeClassCommand, MaskEditCommand, ReplaceInstancesCommand


def replace_mask(canvas, inst: Instance, new: Mask, action: str, **details) -> bool:
    """Push the change from ``inst.mask`` to ``new`` as a tile delta; False if nothing changed."""
    s = canvas.session
    box = union_box(inst.mask.bbox, new.bbox)
    if box[2] <= box[0]:
        return False
    before = inst.mask.read_box(box)
    after = s.clip(inst.class_name, box, before, new.read_box(box), exclude_id=inst.id)
    delta = MaskDelta.from_box(box, before, after)
    if delta.is_empty:
        canvas.message(f"{action.replace('_', ' ')}: nothing changed")
        return False
    canvas.push(MaskEditCommand(s, inst.id, delta, action, **details))
    return True


def _need_selection(canvas):
    inst = canvas.session.selected
    if inst is None:
        canvas.message("Select an instance first")
    return inst


def dilate(canvas, radius: int = 2) -> None:
    inst = _need_selection(canvas)
    if inst is not None:
        replace_mask(canvas, inst, inst.mask.dilate(radius), "dilate", radius=radius)


def erode(canvas, radius: int = 2) -> None:
    inst = _need_selection(canvas)
    if inst is not None:
        replace_mask(canvas, inst, inst.mask.erode(radius), "erode", radius=radius)


def fill_holes(canvas) -> None:
    inst = _need_selection(canvas)
    if inst is not None:
        replace_mask(canvas, inst, inst.mask.fill_holes(), "fill_holes")


def remove_small(canvas, min_area: int = 64) -> None:
    inst = _need_selection(canvas)
    if inst is not None:
        replace_mask(canvas, inst, inst.mask.remove_small(min_area), "remove_small", min_area=min_area)


def split(canvas) -> None:
    inst = _need_selection(canvas)
    if inst is None:
        return
    parts = inst.mask.components()
    if len(parts) < 2:
        canvas.message("The selected mask has one part: nothing to split")
        return
    new = [Instance(inst.image_id, inst.class_name, p, inst.state, inst.origin, inst.score) for p in parts]
    canvas.push(ReplaceInstancesCommand(canvas.session, [inst.id], new, "split", parts=len(parts)))


def merge(canvas) -> None:
    s = canvas.session
    insts = [s.instances[i] for i in s.selection]
    if len(insts) < 2:
        canvas.message("Select two or more instances to merge (Ctrl+click)")
        return
    first = insts[0]
    merged = Mask.merge([i.mask for i in insts])
    new = Instance(first.image_id, first.class_name, merged, InstanceState.ACCEPTED, first.origin, first.score)
    canvas.push(ReplaceInstancesCommand(s, [i.id for i in insts], [new], "merge", merged=len(insts)))


def delete(canvas) -> None:
    s = canvas.session
    if not s.selection:
        canvas.message("Select an instance to delete")
        return
    canvas.push(ReplaceInstancesCommand(s, list(s.selection), [], "delete"))


def change_class(canvas, class_name: str) -> None:
    s = canvas.session
    ids = [i for i in s.selection if s.instances[i].class_name != class_name]
    if ids:
        canvas.push(ChangeClassCommand(s, ids, class_name))

