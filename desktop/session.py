"""The editing session: the open project's current image, its instances, the selection,
the current class and the overlap policy. Plain Python (no Qt).

Every change the user makes is one ``action()``: one store transaction holding the
document change, the state change and the interaction-log row, or nothing at all. Views
hear about an action through the hooks only after it committed; when it fails, the
transaction rolls back, the session re-reads the image from the store (so what is shown
is what is saved) and ``failed`` says why.
"""
from __future__ import annotations

import contextlib
import time
from typing import Iterable, Iterator, Optional

import numpy as np

from annotation.document import ImageRecord, ImageStatus, Instance, InstanceState
from annotation.mask import Box, Mask
from annotation.overlap import OverlapPolicy
from annotation.palette import Palette
from annotation.rules import RuleChecker
from annotation.store import ProjectStore, StoreError
from desktop.hooks import Hook


class EditingSession:
    def __init__(self, store: ProjectStore):
        self.store = store
        self.read_only: Optional[str] = store.read_only  # why editing is off, or None
        self.image: Optional[ImageRecord] = None
        self.instances: dict[int, Instance] = {}
        self.rejected: dict[int, Instance] = {}  # kept for undo; hidden from the canvas
        self.weak_clicks: dict[int, dict] = {}  # log row id -> {x, y, positive, class_name}
        self.selection: list[int] = []
        self.hidden_classes: set[str] = set()
        self.palette: Palette = store.palette
        self.current_class: str = self.palette.names[0]
        self.overlap_enabled: bool = self.palette.exclusive
        self.rules = RuleChecker(self.palette)
        self.warnings: list[str] = []
        self._depth = 0  # nesting of action()
        self._queue: list[tuple[Hook, tuple]] = []  # notifications held until the action commits
        self._touched: dict[int, Optional[Box]] = {}  # instances an action changed (for the rule check)
        self._image_touched = False
        # hooks: views listen, the session never knows a widget
        self.image_changed = Hook()  # () another image was opened
        self.instances_reloaded = Hook()  # () the instances were re-read from the store: redraw them all
        self.instance_changed = Hook()  # (instance_id, box or None for "everything")
        self.instance_added = Hook()  # (instance_id)
        self.instance_removed = Hook()  # (instance_id)
        self.selection_changed = Hook()  # ()
        self.palette_changed = Hook()  # ()
        self.current_class_changed = Hook()  # (name)
        self.image_updated = Hook()  # (image_id) its status or instance counts changed
        self.warnings_changed = Hook()  # (list[str])
        self.weak_clicks_changed = Hook()  # ()
        self.tags_changed = Hook()  # () the current image's tags
        self.failed = Hook()  # (message, outcome) an action could not be saved; nothing of it was kept

    # ------------------------------------------------------------ actions
    @contextlib.contextmanager
    def action(self) -> Iterator[None]:
        """One user action: one transaction; the hooks fire after it commits.

        Raises ``StoreError`` (read-only project, disk full, ...) or whatever failed
        inside; then nothing of the action is in the store and the session has re-read
        the image, so memory matches the store again.
        """
        if self.read_only:
            raise StoreError(self.read_only)
        outer = self._depth == 0
        self._depth += 1
        try:
            with self.store.transaction():
                yield
        except BaseException:
            self._depth -= 1
            if outer:
                self._queue.clear()
                self._touched.clear()
                self._image_touched = False
                self._resync()
            raise
        self._depth -= 1
        if outer:
            self._flush()

    def _notify(self, hook: Hook, *args) -> None:
        if self._depth:
            self._queue.append((hook, args))
        else:
            hook.emit(*args)

    def _touch(self, instance_id: Optional[int], box: Optional[Box] = None) -> None:
        if instance_id is not None:
            if instance_id in self._touched and self._touched[instance_id] is not None and box is not None:
                a, b = self._touched[instance_id], box
                box = (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))
            elif instance_id in self._touched:
                box = None
            self._touched[instance_id] = box
        self._image_touched = True

    def _flush(self) -> None:
        queue, self._queue = self._queue, []
        touched, self._touched = self._touched, {}
        image_touched, self._image_touched = self._image_touched, False
        for hook, args in queue:
            hook.emit(*args)
        if touched:
            self._set_warnings(self.rules.update(self.instances, touched))
        if image_touched and self.image is not None:
            self.image_updated.emit(self.image.id)

    def _resync(self) -> None:
        """After a failed action: show what the store holds (the transaction rolled back)."""
        if self.image is None:
            return
        try:
            self.image = self.store.image(self.image.id)
            self._load_instances(self.image.id)
        except Exception:  # noqa: BLE001 - the store itself is unusable: keep what is shown
            return
        self.selection = [i for i in self.selection if i in self.instances]
        self.instances_reloaded.emit()
        self.selection_changed.emit()
        self._set_warnings(self.rules.reset(self.instances))

    def report_failure(self, what: str, exc: BaseException, outcome: str) -> None:
        """Tell the views an action failed (the store and memory already agree again).

        ``outcome`` says what became of it: ``"retry"`` (it waits in the undo history as
        the next redo: Redo saves it once the cause is gone), ``"dropped"`` (it cannot be
        saved here at all, e.g. a read-only project) or ``"history"`` (an undo failed, so
        the history no longer matches the document and is cleared)."""
        reason = str(exc) if isinstance(exc, StoreError) else f"{exc.__class__.__name__}: {exc}"
        text = f"{what} was not saved: {reason}"
        if outcome == "retry":
            text += ". It waits as the next Redo (Ctrl+Y): redo it once the cause is fixed"
        self.failed.emit(text, outcome)

    # ------------------------------------------------------------ image
    def _load_instances(self, image_id: int) -> None:
        self.instances = {}
        self.rejected = {}
        for inst in self.store.instances(image_id):
            (self.rejected if inst.state is InstanceState.REJECTED else self.instances)[inst.id] = inst

    def open_image(self, image_id: int) -> None:
        self.image = self.store.image(image_id)
        self._load_instances(image_id)
        self.selection = []
        self.weak_clicks = self._load_weak_clicks(image_id)
        self.weak_clicks_changed.emit()
        self.image_changed.emit()
        self.selection_changed.emit()
        self._set_warnings(self.rules.reset(self.instances))

    def close_image(self) -> None:
        self.image = None
        self.instances, self.rejected, self.selection, self.weak_clicks = {}, {}, [], {}

    @property
    def image_size(self) -> tuple[int, int]:
        assert self.image is not None
        return self.image.size

    def _mark_in_progress(self) -> None:
        """The first edit or decision on a new image puts it in progress."""
        if self.image is not None and self.image.status is ImageStatus.NEW:
            self.set_status(ImageStatus.IN_PROGRESS)

    def set_image_status(self, status: ImageStatus, log_action: Optional[str] = None) -> None:
        """Commit the image's status (with its log row, when given) as one action."""
        if self.image is None:
            return
        with self.action():
            self.set_status(status)
            if log_action:
                self.log(log_action)

    def set_status(self, status: ImageStatus) -> None:
        """Change the current image's status (inside an action)."""
        assert self.image is not None
        if self.image.status is not ImageStatus(status):
            self.store.set_image_status(self.image.id, status)
            self.image.status = ImageStatus(status)
            self._touch(None)

    # ------------------------------------------------------------ palette / class
    def set_palette(self, palette: Palette) -> None:
        with self.action():
            self.store.set_palette(palette)
        self.palette = palette
        self.rules = RuleChecker(palette)
        self.overlap_enabled = palette.exclusive
        if self.current_class not in palette:
            self.current_class = palette.names[0]
        self.palette_changed.emit()
        self.current_class_changed.emit(self.current_class)
        self._set_warnings(self.rules.reset(self.instances))

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

    def _set_warnings(self, violations) -> None:
        msgs = [v.message() for v in violations]
        if msgs != self.warnings:
            self.warnings = msgs
            self.warnings_changed.emit(msgs)

    # ------------------------------------------------------------ selection / visibility
    def select(self, ids: Iterable[int]) -> None:
        ids = [i for i in ids if i in self.instances]
        if ids != self.selection:
            self.selection = ids
            self._notify(self.selection_changed)

    @property
    def selected(self) -> Optional[Instance]:
        return self.instances.get(self.selection[0]) if self.selection else None

    def set_hidden(self, instance_id: int, hidden: bool) -> None:
        """Show or hide one instance; a view setting, saved so that it survives a restart."""
        inst = self.instances[instance_id]
        if inst.hidden != hidden:
            with self.action():
                self.store.set_hidden(instance_id, hidden)
                inst.hidden = hidden
                self._notify(self.instance_changed, instance_id, None)

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

    # ------------------------------------------------------------ document changes (inside an action)
    def store_mask(self, instance_id: int, box: Optional[Box]) -> None:
        """Store an instance whose mask was changed in memory over ``box`` (a delta applied)."""
        inst = self.instances[instance_id]
        inst.modified = time.time()
        self.store.update_instance(inst, touch=False, changed=box)
        self._mark_in_progress()
        self._touch(instance_id, box)
        self._notify(self.instance_changed, instance_id, box)

    def add_instance(self, inst: Instance) -> int:
        """Store ``inst`` (keeping ``inst.id`` when set: undo of a delete) and show it."""
        assert self.image is not None
        inst.image_id = self.image.id
        self.store.add_instance(inst)
        self.instances[inst.id] = inst
        self._mark_in_progress()
        self._touch(inst.id)
        self._notify(self.instance_added, inst.id)
        return inst.id

    def remove_instance(self, instance_id: int) -> Instance:
        inst = self.instances.pop(instance_id)
        self.store.delete_instance(instance_id)
        self._deselect([instance_id])
        self._touch(instance_id)
        self._notify(self.instance_removed, instance_id)
        return inst

    def set_class(self, instance_id: int, class_name: str) -> None:
        inst = self.instances[instance_id]
        self.store.set_class([instance_id], class_name)
        inst.class_name = class_name
        self._touch(instance_id)
        self._notify(self.instance_changed, instance_id, None)

    def set_attributes(self, instance_id: int, attributes: dict) -> None:
        """Replace an instance's attributes (inside an action)."""
        inst = self.instances[instance_id]
        self.store.set_attributes(instance_id, attributes)
        inst.attributes = dict(attributes)
        self._mark_in_progress()
        self._touch(None)
        self._notify(self.instance_changed, instance_id, None)

    def set_tags(self, tags: list[str]) -> None:
        """Replace the current image's tags (inside an action)."""
        assert self.image is not None
        self.store.set_image_tags(self.image.id, tags)
        self.image.tags = list(dict.fromkeys(tags))
        self._mark_in_progress()
        self._touch(None)
        self._notify(self.tags_changed)

    def set_states(self, ids: Iterable[int], state: InstanceState) -> None:
        """Change the state of these instances (one UPDATE; masks are not rewritten). A
        rejected instance stays in the store (a training negative) but leaves the canvas;
        setting another state brings it back."""
        state = InstanceState(state)
        ids = [i for i in ids if i in self.instances or i in self.rejected]
        self.store.set_states(ids, state)
        self._mark_in_progress()
        now = time.time()
        for iid in ids:
            if iid in self.rejected:
                inst = self.rejected.pop(iid) if state is not InstanceState.REJECTED else self.rejected[iid]
            else:
                inst = self.instances[iid]
            was_rejected = inst.state is InstanceState.REJECTED
            inst.state, inst.modified = state, now
            self._touch(iid)
            if state is InstanceState.REJECTED and not was_rejected:
                del self.instances[iid]
                self.rejected[iid] = inst
                self._deselect([iid])
                self._notify(self.instance_removed, iid)
            elif was_rejected and state is not InstanceState.REJECTED:
                self.instances[iid] = inst
                self._notify(self.instance_added, iid)
            else:
                self._notify(self.instance_changed, iid, None)

    def set_states_across(self, ids_by_image: dict[int, list[int]], state: InstanceState) -> None:
        """``set_states`` for instances of any images (the clustered review decides across
        the project): the open image's through the session, the others' in the store."""
        for image_id, ids in ids_by_image.items():
            if self.image is not None and image_id == self.image.id:
                self.set_states(ids, state)
            else:
                self.store.set_states(ids, state)
                self._notify(self.image_updated, image_id)

    def _deselect(self, ids: Iterable[int]) -> None:
        gone = set(ids)
        if gone & set(self.selection):
            self.selection = [i for i in self.selection if i not in gone]
            self._notify(self.selection_changed)

    def proposals(self) -> list[Instance]:
        """The current image's proposals waiting for a decision, best score first."""
        return sorted((i for i in self.instances.values() if i.is_proposal),
                      key=lambda i: (-(i.score or 0.0), i.id or 0))

    def reload_proposals(self) -> None:
        """Re-read the current image's proposals from the store (after ``store_proposals``)."""
        assert self.image is not None
        fresh = {i.id: i for i in self.store.instances(self.image.id, [InstanceState.PROPOSED])}
        gone = [iid for iid, i in self.instances.items() if i.is_proposal or iid in fresh]
        for iid in gone:
            del self.instances[iid]
            self._touch(iid)
        self._deselect(gone)
        for iid in gone:
            self._notify(self.instance_removed, iid)
        for iid, inst in fresh.items():
            self.instances[iid] = inst
            self._touch(iid)
            self._notify(self.instance_added, iid)

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
        self._mark_in_progress()
        self._touch(None)
        self._notify(self.weak_clicks_changed)
        return log_id

    def remove_weak_click(self, log_id: int) -> None:
        """Undo of a weak click: the log keeps both rows; readers drop clicks undone later."""
        d = self.weak_clicks.pop(log_id, None)
        self.log("weak_click_undone", class_name=None if d is None else d["class_name"], log_id=log_id)
        self._notify(self.weak_clicks_changed)

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
