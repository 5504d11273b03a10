"""The editing session: the open project, the current image, its instances, the
selection, the current class and the overlap policy. Plain Python (no Qt).

Every method that changes an instance commits it to the store before returning
(autosave), so a crash loses at most the stroke in progress. Views subscribe to the
hooks; undo commands call the ``*_raw`` style methods below.
"""
from __future__ import annotations

import time
from typing import Iterable, Optional

import numpy as np

from annotation.document import ImageRecord, ImageStatus, Instance, InstanceState
from annotation.mask import Mask
from annotation.overlap import OverlapPolicy
from annotation.palette import Palette, rule_violations
from annotation.store import ProjectStore
from desktop.hooks import Hook

Box = tuple[int, int, int, int]


class EditingSession:
    def __init__(self, store: ProjectStore):
        self.store = store
        self.image: Optional[ImageRecord] = None
        self.instances: dict[int, Instance] = {}
        self.rejected: dict[int, Instance] = {}  # kept for undo; hidden from the canvas
        self.weak_clicks: dict[int, dict] = {}  # log row id -> {x, y, positive, class_name}
        self.selection: list[int] = []
        self.hidden_classes: set[str] = set()
        self.palette: Palette = store.palette
        self.current_class: str = self.palette.names[0]
        self.overlap_enabled: bool = self.palette.exclusive
        # hooks: views listen, the session never knows a widget
        self.image_changed = Hook()  # ()
        self.instance_changed = Hook()  # (instance_id, box or None for "everything")
        self.instance_added = Hook()  # (instance_id)
        self.instance_removed = Hook()  # (instance_id)
        self.selection_changed = Hook()  # ()
        self.palette_changed = Hook()  # ()
        self.current_class_changed = Hook()  # (name)
        self.images_changed = Hook()  # () statuses / counts
        self.warnings_changed = Hook()  # (list[str])
        self.weak_clicks_changed = Hook()  # ()

    # ------------------------------------------------------------ image
    def open_image(self, image_id: int) -> None:
        self.image = self.store.image(image_id)
        self.instances = {i.id: i for i in self.store.instances(image_id) if i.state is not InstanceState.REJECTED}
        self.rejected = {}
        self.selection = []
        self.weak_clicks = self._load_weak_clicks(image_id)
        self.weak_clicks_changed.emit()
        self.image_changed.emit()
        self.selection_changed.emit()
        self.check_rules()

    @property
    def image_size(self) -> tuple[int, int]:
        assert self.image is not None
        return self.image.size

    def mark_in_progress(self) -> None:
        if self.image is not None and self.image.status is ImageStatus.NEW:
            self.store.set_image_status(self.image.id, ImageStatus.IN_PROGRESS)
            self.image.status = ImageStatus.IN_PROGRESS
            self.images_changed.emit()

    def set_image_status(self, status: ImageStatus) -> None:
        if self.image is None:
            return
        self.store.set_image_status(self.image.id, status)
        self.image.status = ImageStatus(status)
        self.images_changed.emit()

    # ------------------------------------------------------------ palette / class
    def set_palette(self, palette: Palette) -> None:
        self.store.set_palette(palette)
        self.palette = palette
        self.overlap_enabled = palette.exclusive
        if self.current_class not in palette:
            self.current_class = palette.names[0]
        self.palette_changed.emit()
        self.current_class_changed.emit(self.current_class)
        self.check_rules()

    def set_current_class(self, name: str) -> None:
        if name not in self.palette:
            raise KeyError(name)
        self.current_class = name
        self.current_class_changed.emit(name)

    @property
    def policy(self) -> OverlapPolicy:
        return OverlapPolicy(self.palette, self.overlap_enabled)

    def clip(self, class_name: str, box: Box, before: np.ndarray, after: np.ndarray,
             exclude_id: Optional[int] = None) -> np.ndarray:
        """``after`` with pixels the overlap policy forbids removed from the added ones."""
        return self.policy.clip(class_name, box, before, after, self.instances.values(), exclude_id)

    def clip_new_mask(self, class_name: str, mask: Mask) -> Mask:
        if mask.is_empty() or not self.overlap_enabled:
            return mask
        box = mask.bbox
        after = self.clip(class_name, box, np.zeros((box[3] - box[1], box[2] - box[0]), bool), mask.read_box(box))
        return Mask(box[0], box[1], after, mask.image_size).cropped()

    def check_rules(self) -> list[str]:
        msgs = [v.message() for v in rule_violations(self.palette, self.instances.values())]
        self.warnings_changed.emit(msgs)
        return msgs

    # ------------------------------------------------------------ selection / visibility
    def select(self, ids: Iterable[int]) -> None:
        ids = [i for i in ids if i in self.instances]
        if ids != self.selection:
            self.selection = ids
            self.selection_changed.emit()

    @property
    def selected(self) -> Optional[Instance]:
        return self.instances.get(self.selection[0]) if self.selection else None

    def set_hidden(self, instance_id: int, hidden: bool) -> None:
        inst = self.instances[instance_id]
        if inst.hidden != hidden:
            inst.hidden = hidden
            self.store.update_instance(inst, touch=False)
            self.instance_changed.emit(instance_id, None)

    def set_class_hidden(self, name: str, hidden: bool) -> None:
        if hidden:
            self.hidden_classes.add(name)
        else:
            self.hidden_classes.discard(name)
        for iid, inst in self.instances.items():
            if inst.class_name == name:
                self.instance_changed.emit(iid, None)

    def is_visible(self, inst: Instance) -> bool:
        return not inst.hidden and inst.class_name not in self.hidden_classes

    # ------------------------------------------------------------ edits (commit at once)
    def write_mask(self, instance_id: int, box: Box, values: np.ndarray) -> None:
        """Overwrite the mask over ``box`` and commit; used by undo commands both ways."""
        inst = self.instances[instance_id]
        inst.mask.write_box(box, values)
        self.store.update_instance(inst)
        self.mark_in_progress()
        self.instance_changed.emit(instance_id, box)

    def commit_instance(self, instance_id: int) -> None:
        """Commit an instance whose mask was changed in place (a live stroke)."""
        self.store.update_instance(self.instances[instance_id])

    def add_instance(self, inst: Instance) -> int:
        """Store ``inst`` (keeping ``inst.id`` when set: undo of a delete) and show it."""
        assert self.image is not None
        inst.image_id = self.image.id
        self.store.add_instance(inst)
        self.instances[inst.id] = inst
        self.mark_in_progress()
        self.instance_added.emit(inst.id)
        return inst.id

    def remove_instance(self, instance_id: int) -> Instance:
        inst = self.instances.pop(instance_id)
        self.store.delete_instance(instance_id)
        if instance_id in self.selection:
            self.selection = [i for i in self.selection if i != instance_id]
            self.selection_changed.emit()
        self.instance_removed.emit(instance_id)
        return inst

    def set_class(self, instance_id: int, class_name: str) -> None:
        inst = self.instances[instance_id]
        inst.class_name = class_name
        self.store.update_instance(inst)
        self.instance_changed.emit(instance_id, None)

    def set_state(self, instance_id: int, state: InstanceState) -> None:
        """Commit a new state. A rejected instance stays in the store (a training negative)
        but leaves the canvas; setting another state brings it back."""
        state = InstanceState(state)
        if instance_id in self.rejected:
            if state is InstanceState.REJECTED:
                return
            inst = self.rejected.pop(instance_id)
            inst.state = state
            self.store.update_instance(inst)
            self.instances[instance_id] = inst
            self.instance_added.emit(instance_id)
            return
        inst = self.instances[instance_id]
        inst.state = state
        self.store.update_instance(inst)
        if state is InstanceState.REJECTED:
            del self.instances[instance_id]
            self.rejected[instance_id] = inst
            if instance_id in self.selection:
                self.selection = [i for i in self.selection if i != instance_id]
                self.selection_changed.emit()
            self.instance_removed.emit(instance_id)
        else:
            self.instance_changed.emit(instance_id, None)

    def proposals(self) -> list[Instance]:
        """The current image's proposals waiting for a decision, best score first."""
        return sorted((i for i in self.instances.values() if i.is_proposal),
                      key=lambda i: (-(i.score or 0.0), i.id or 0))

    def replace_proposals(self, remove: Iterable[int], add: Iterable[Instance], *, stored: bool = False) -> None:
        """Swap proposals in one transaction (a new proposing run; its undo). ``stored``:
        ``add`` is already in the store with its ids (written by the proposing worker)."""
        remove = [i for i in remove if i in self.instances]
        add = list(add)
        with self.store.transaction():
            self.store.delete_instance_ids(remove)
            if not stored:
                for inst in add:
                    inst.image_id = self.image.id
                    self.store.add_instance(inst)
        for iid in remove:
            del self.instances[iid]
        if set(remove) & set(self.selection):
            self.selection = [i for i in self.selection if i not in remove]
            self.selection_changed.emit()
        for iid in remove:
            self.instance_removed.emit(iid)
        for inst in add:
            self.instances[inst.id] = inst
            self.instance_added.emit(inst.id)

    def sync_proposals_from_store(self) -> None:
        """Show the proposals another connection (a project-wide run) stored for this image."""
        assert self.image is not None
        fresh = {i.id: i for i in self.store.instances(self.image.id, [InstanceState.PROPOSED])}
        # all of them: the store may have given a new proposal the id of a deleted one
        gone = [iid for iid, i in self.instances.items() if i.is_proposal or iid in fresh]
        for iid in gone:
            del self.instances[iid]
        if set(gone) & set(self.selection):
            self.selection = [i for i in self.selection if i not in gone]
            self.selection_changed.emit()
        for iid in gone:
            self.instance_removed.emit(iid)
        for iid, inst in fresh.items():
            self.instances[iid] = inst
            self.instance_added.emit(iid)

    # ------------------------------------------------------------ weak clicks (interaction log only)
    def _load_weak_clicks(self, image_id: int) -> dict[int, dict]:
        rows = self.store.interactions(image_id=image_id, actions=["weak_click", "weak_click_undone"])
        clicks: dict[int, dict] = {}
        for r in rows:
            if r.action == "weak_click":
                clicks[r.id] = {**r.details, "class_name": r.class_name}
            else:
                clicks.pop(r.details.get("log_id"), None)
        return clicks

    def add_weak_click(self, x: float, y: float, positive: bool, class_name: str, started: float) -> int:
        """Log one weak label (a point on a defect patch, or on clean surface); returns its log id."""
        d = {"x": round(float(x), 2), "y": round(float(y), 2), "positive": bool(positive)}
        log_id = self.log("weak_click", class_name=class_name, started=started, **d)  # class in its column
        self.weak_clicks[log_id] = {**d, "class_name": class_name}
        self.mark_in_progress()
        self.weak_clicks_changed.emit()
        return log_id

    def remove_weak_click(self, log_id: int) -> None:
        """Undo of a weak click: the log keeps both rows; readers drop clicks undone later."""
        d = self.weak_clicks.pop(log_id, None)
        self.log("weak_click_undone", class_name=None if d is None else d["class_name"], log_id=log_id)
        self.weak_clicks_changed.emit()

    def log(self, action: str, *, instance_id: Optional[int] = None, class_name: Optional[str] = None,
            started: Optional[float] = None, ended: Optional[float] = None, **details) -> int:
        return self.store.log(
            action,
            image_id=None if self.image is None else self.image.id,
            instance_id=instance_id,
            class_name=class_name,
            started=started,
            ended=time.time() if ended is None else ended,
            **details,
        )
