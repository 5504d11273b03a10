"""Which image is open: opening one (its pixels decoded in a worker), stepping to the
next or previous, marking it done, and remembering the last one per project."""
from __future__ import annotations

from typing import Optional

from PySide6.QtCore import QObject, Signal

from annotation.document import ImageStatus
from annotation.store import StoreError
from desktop import settings
from desktop.canvas.view import CanvasView
from desktop.context import ProjectContext
from desktop.loader import ImageLoader
from desktop.panels.images import ImagesModel


class ImageNavigator(QObject):
    """``image_opened(image_id)`` at once (the instances are there); ``pixels_ready()`` when
    the picture is decoded and shown (``ctx.current_rgb`` set)."""

    image_opened = Signal(int)
    pixels_ready = Signal()

    def __init__(self, ctx: ProjectContext, canvas: CanvasView, images: ImagesModel):
        super().__init__(ctx)
        self.ctx = ctx
        self.canvas = canvas
        self.images = images
        self.loader = ImageLoader(self)
        self.loader.loaded.connect(self._loaded)

    @property
    def current_id(self) -> Optional[int]:
        img = self.ctx.session.image
        return None if img is None else img.id

    def open_first(self) -> None:
        """The image the user had open last time, else the first one (if any)."""
        if self.current_id is not None or self.images.rowCount() == 0:
            return
        last = settings.last_image(self.ctx.store.root)
        start = None
        if last is not None:
            rec = self.ctx.store.image_by_path(last)
            start = None if rec is None else rec.id
        self.open_image(start if start is not None else self.images.record(0).id)

    def open_image(self, image_id: int) -> None:
        ctx, s = self.ctx, self.ctx.session
        if self.canvas.tool is not None:
            self.canvas.tool.cancel()
        ctx.undo_stack.clear()  # commands refer to the instances of one image
        s.open_image(image_id)
        ctx.current_rgb = None
        self.canvas.set_image(None)
        settings.set_last_image(ctx.store.root, s.image.path)
        self.image_opened.emit(image_id)
        if s.image.error:
            self._cannot_show(s.image.error)
            return
        ctx.say(f"Loading {s.image.path}…", 0)
        self.loader.request(str(ctx.store.image_file(s.image)))

    def _loaded(self, _rid, rgb, low, err) -> None:
        ctx = self.ctx
        if ctx.closed or ctx.session.image is None:
            return
        if rgb is None:
            self._cannot_show(err)
            return
        ctx.current_rgb = rgb
        # the zoomed-out level the loader's worker made travels with the array, so the
        # canvas's image item takes it instead of resizing the photo on this thread
        self.canvas.set_image(rgb, low)
        ctx.say(f"{ctx.session.image.path}: {rgb.shape[1]}×{rgb.shape[0]}", 4000)
        self.pixels_ready.emit()

    def _cannot_show(self, reason: str) -> None:
        path = self.ctx.session.image.path
        text = f"Cannot show {path}: {reason}"
        self.ctx.say(text, 0)
        self.canvas.show_problem(f"{text}\n\nIts labels are kept. Put the file back (or fix it) and open the "
                                 f"image again; D goes on to the next image.")

    def step(self, step: int) -> None:
        cur = self.current_id
        if cur is None:
            return
        nxt = self.images.neighbour(cur, step)
        if nxt is not None:
            self.open_image(nxt)

    def next_pending(self) -> bool:
        """Open the next image (in list order, wrapping) that has proposals to review;
        False when no other image has any."""
        nxt = self.images.next_with_proposals(self.current_id)
        if nxt is None or nxt == self.current_id:
            return False
        self.open_image(nxt)
        self.ctx.say("Next image with proposals to review", 3000)
        return True

    def neighbour(self, step: int) -> Optional[int]:
        return self.images.neighbour(self.current_id, step)

    def mark_done(self) -> None:
        try:
            self.ctx.session.set_image_status(ImageStatus.DONE, log_action="image_done")
        except StoreError as exc:
            self.ctx.say(f"Cannot mark the image done: {exc}", 12000)
