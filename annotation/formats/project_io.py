"""Glue between the formats and a project: import into a ``ProjectStore``, export from one.

Import matches each image of the file to a project image: by the file the
importer found on disk (when it lies inside the project), then by relative path,
then by file name, then by file stem (mask formats name ``ID.png`` for ``ID.jpg``),
each only when unambiguous. An image not in the project is added when its file
exists under the project folder, else reported. A path read from an annotation
never reaches outside the project: absolute paths and ``..`` that climb out are
refused (such an image may still match a project image by name). The whole
import is one transaction: it lands completely or not at all; a file the importer
refuses (``FormatError``) is refused before the transaction begins.

``ImportReport.finished_with_problems`` says whether anything of the file did not
make it in (images skipped or not found, damaged labels skipped): ``specula import``
exits 1 then.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, NamedTuple, Optional, Sequence

from annotation.document import ImageRecord, ImageStatus, Instance, InstanceState
from annotation.formats.class_masks import export_class_masks, import_class_masks
from annotation.formats.coco import export_coco, import_coco
from annotation.formats.color_masks import export_color_masks, import_color_masks
from annotation.formats.common import (
    FormatError,
    ImportResult,
    LabelledImage,
    LabelledInstance,
    Progress,
    is_file,
    path_text_problem,
    safe_relative,
    shown_path,
)
from annotation.formats.cvat import export_cvat, import_cvat
from annotation.formats.instance_masks import (
    export_instance_masks,
    import_instance_masks,
)
from annotation.formats.labelme import export_labelme, import_labelme
from annotation.palette import Palette
from annotation.store import ProjectStore

Importer = Callable[..., ImportResult]
Exporter = Callable[..., list]


class FormatEntry(NamedTuple):
    """``importer(path, *, image_root=None, palette=None, class_name=None, progress=None,
    project_root=None) -> ImportResult``
    and ``exporter(images, palette, out_path, *, polygons=False, progress=None) -> warnings``.

    Options a format has no use for are ignored by its adapter (``import_into_project``
    says so in its report), so callers can treat all formats alike.
    """

    importer: Importer
    exporter: Exporter


def _coco_in(path, *, image_root=None, palette=None, class_name=None, progress=None,
             project_root=None) -> ImportResult:
    return import_coco(path, image_root, progress=progress)


def _coco_out(images, palette, out_path, *, polygons=False, progress=None) -> list:
    return export_coco(images, palette, out_path, polygons=polygons, progress=progress)


def _labelme_in(path, *, image_root=None, palette=None, class_name=None, progress=None,
                project_root=None) -> ImportResult:
    return import_labelme(path, image_root, progress=progress,
                          allowed_roots=[project_root] if project_root is not None else ())


def _labelme_out(images, palette, out_path, *, polygons=False, progress=None) -> list:
    return export_labelme(images, palette, out_path, progress=progress)


def _cvat_in(path, *, image_root=None, palette=None, class_name=None, progress=None,
             project_root=None) -> ImportResult:
    return import_cvat(path, image_root, progress=progress)


def _cvat_out(images, palette, out_path, *, polygons=False, progress=None) -> list:
    return export_cvat(images, palette, out_path, progress=progress)


def _color_in(path, *, image_root=None, palette=None, class_name=None, progress=None,
              project_root=None) -> ImportResult:
    return import_color_masks(path, palette, image_root, progress=progress)


def _color_out(images, palette, out_path, *, polygons=False, progress=None) -> list:
    return export_color_masks(images, palette, out_path, progress=progress)


def _instance_in(path, *, image_root=None, palette=None, class_name=None, progress=None,
                 project_root=None) -> ImportResult:
    return import_instance_masks(path, image_root, class_name, progress=progress)


def _instance_out(images, palette, out_path, *, polygons=False, progress=None) -> list:
    return export_instance_masks(images, palette, out_path, progress=progress)


def _class_in(path, *, image_root=None, palette=None, class_name=None, progress=None,
              project_root=None) -> ImportResult:
    if not class_name:
        raise FormatError("binary class masks carry no class name; give the class they hold (class_name)")
    return import_class_masks(path, class_name, image_root, progress=progress)


def _class_out(images, palette, out_path, *, polygons=False, progress=None) -> list:
    return export_class_masks(images, palette, out_path, progress=progress)


FORMATS: dict[str, FormatEntry] = {
    "coco": FormatEntry(_coco_in, _coco_out),
    "labelme": FormatEntry(_labelme_in, _labelme_out),
    "cvat": FormatEntry(_cvat_in, _cvat_out),
    "color-masks": FormatEntry(_color_in, _color_out),
    "instance-masks": FormatEntry(_instance_in, _instance_out),
    "class-masks": FormatEntry(_class_in, _class_out),
}
# which import options each format reads; the others are reported as ignored
_USES_CLASS_NAME = {"class-masks", "instance-masks"}


@dataclass
class ImportReport:
    format: str
    path: str
    images_matched: int = 0  # images whose labels were stored, the added ones included
    images_added: list[str] = field(default_factory=list)
    images_not_found: list[str] = field(default_factory=list)  # neither in the project nor on disk inside it
    instances_added: int = 0
    duplicates_skipped: int = 0  # identical to an instance already in the project
    classes_added: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # images whose labels were not imported, each "<image>: why" (said in ``warnings`` too):
    # skipped by the importer (damaged, over a limit) or by the matching (ambiguous name,
    # another size, unreadable)
    images_skipped: list[str] = field(default_factory=list)
    labels_skipped: int = 0  # damaged annotations / shapes / mask files the importer skipped

    @property
    def problems(self) -> int:
        """Images and labels of the file that did not make it into the project."""
        return len(self.images_skipped) + len(self.images_not_found) + self.labels_skipped

    @property
    def finished_with_problems(self) -> bool:
        """True when something of the file was not imported (``specula import`` exits 1)."""
        return self.problems > 0


@dataclass
class ExportReport:
    format: str
    path: str
    images: int = 0
    instances: int = 0
    warnings: list[str] = field(default_factory=list)


def _check_format(fmt: str) -> FormatEntry:
    try:
        return FORMATS[fmt]
    except KeyError:
        raise FormatError(f"unknown format '{fmt}'; known: {', '.join(FORMATS)}") from None


class _Matcher:
    """Finds the project image a ``LabelledImage`` belongs to (see the module note)."""

    def __init__(self, store: ProjectStore):
        self.store = store
        self.root = Path(store.root).resolve()
        self.records = store.images()
        self.by_name: dict[str, list[ImageRecord]] = {}
        self.by_stem: dict[str, list[ImageRecord]] = {}
        for r in self.records:
            self._index(r)

    def _index(self, r: ImageRecord) -> None:
        p = Path(r.path)
        self.by_name.setdefault(p.name, []).append(r)
        self.by_stem.setdefault(p.stem, []).append(r)

    def inside(self, file: Path) -> Optional[str]:
        """``file`` relative to the project root, or None if it lies outside (symlinks resolved)."""
        try:
            return Path(file).resolve().relative_to(self.root).as_posix()
        except (ValueError, OSError):
            return None

    def match(self, li: LabelledImage, report: ImportReport) -> ImageRecord | str | None:
        """The project image of ``li``; a string says why it was refused; None: not in the project."""
        candidates: list[str] = []
        if li.file is not None:
            rel = self.inside(li.file)
            if rel is not None:
                candidates.append(rel)
        rel_p = safe_relative(li.path)
        if rel_p is not None:
            candidates.append(rel_p.as_posix())
        for rel in candidates:
            rec = self.store.image_by_path(rel)
            if rec is not None:
                return rec
        for rel in candidates:  # the very file, on disk in the project: better than a name match
            full = self.root / rel
            if is_file(full) and self.inside(full) is not None:
                return self._add(rel, full, li, report)
        name = Path(str(li.path).replace("\\", "/")).name
        for table, key in ((self.by_name, name), (self.by_stem, Path(name).stem)):
            hits = table.get(key, [])
            if len(hits) == 1:
                if rel_p is None:
                    report.warnings.append(f"image path '{li.path}' points outside the project folder; refused, "
                                           f"matched by file name to {hits[0].path}")
                return hits[0]
            if len(hits) > 1:
                return (
                    f"image '{li.path}' matches {len(hits)} project images by name "
                    f"({', '.join(h.path for h in hits[:4])}{', ...' if len(hits) > 4 else ''}); "
                    f"not imported, give the path relative to the project"
                )
        if rel_p is None:
            return f"image path '{li.path}' points outside the project folder and matches no project image by name"
        return None

    def _add(self, rel: str, full: Path, li: LabelledImage, report: ImportReport) -> ImageRecord | str:
        from annotation.images import ImageReadError, image_size

        try:
            h, w = image_size(full)
        except ImageReadError as exc:
            return f"{rel}: the image cannot be read ({exc}); its labels were not imported"
        image_id = self.store.add_image(rel, h, w)
        rec = self.store.image(image_id)
        self._index(rec)
        report.images_added.append(rel)
        return rec


def import_into_project(
    store: ProjectStore,
    fmt: str,
    path: str | Path,
    *,
    class_name: Optional[str] = None,
    progress: Progress = None,
    image_root: Optional[str | Path] = None,
    keep_states: bool = True,
) -> ImportReport:
    """Import an annotation file or folder of format ``fmt`` into ``store``.

    Instances keep the state a Specula export wrote (``specula_state``: proposals made
    elsewhere come back as proposals, for review, not as ground truth); labels without
    one are ``accepted``; ``keep_states=False`` makes everything accepted. Origin and
    score are kept. Instances identical to one
    already on the image (same class, same pixels) are skipped, so importing a
    file twice does not double it. ``progress(done, total)`` is called while the
    file is read and again while images are stored. Raises ``FormatError`` for a
    file that cannot be read; everything smaller is a warning in the report.
    """
    entry = _check_format(fmt)
    report = ImportReport(fmt, str(path))
    if class_name and fmt not in _USES_CLASS_NAME:
        report.warnings.append(f"class_name '{class_name}' is ignored: {fmt} files name their own classes")
    result = entry.importer(
        Path(path), image_root=image_root, palette=store.palette, class_name=class_name, progress=progress,
        project_root=Path(store.root),
    )
    report.warnings.extend(result.warnings)
    report.images_skipped.extend(result.images_skipped)
    report.labels_skipped += result.labels_skipped
    matcher = _Matcher(store)
    with store.transaction():
        for k, li in enumerate(result.images):
            _import_image(store, matcher, li, result, keep_states, report)
            if progress is not None:
                progress(k + 1, len(result.images))
    return report


def _import_image(store: ProjectStore, matcher: _Matcher, li: LabelledImage, result: ImportResult,
                  keep_states: bool, report: ImportReport) -> None:
    problem = path_text_problem(li.path)
    if problem and "UTF-8" in problem:  # an importer let a file's undecodable name through: SQLite cannot take it
        why = f"image '{shown_path(Path(li.path))}': its name {problem}; its labels were not imported"
        report.warnings.append(why)
        report.images_skipped.append(why)
        return
    rec = matcher.match(li, report)
    if isinstance(rec, str):
        report.warnings.append(rec)
        report.images_skipped.append(rec)
        return
    if rec is None:
        report.images_not_found.append(li.path)
        return
    if (rec.height, rec.width) != tuple(li.size):
        why = (f"{rec.path}: the project image is {rec.width}x{rec.height} but the labels are for "
               f"{li.size[1]}x{li.size[0]}; its labels were not imported")
        report.warnings.append(why)
        report.images_skipped.append(why)
        return
    report.images_matched += 1
    if li.tags:
        store.set_image_tags(rec.id, [*rec.tags, *li.tags])
    _store_instances(store, rec, li.instances, result, keep_states, report)


def _store_instances(store: ProjectStore, rec: ImageRecord, items: Sequence[LabelledInstance], result: ImportResult,
                     keep_states: bool, report: ImportReport) -> None:
    existing = store.instances(rec.id)
    new = []
    for li in items:
        if any(e.class_name == li.class_name and e.mask == li.mask for e in existing):
            report.duplicates_skipped += 1
            continue
        if li.class_name not in store.palette:
            color = result.classes.get(li.class_name)
            if color is not None and store.palette.class_for_color(color) is not None:
                color = None  # taken by another class: colour masks must stay readable
            store.ensure_class(li.class_name, color)
            report.classes_added.append(li.class_name)
        state = InstanceState(li.state) if keep_states else InstanceState.ACCEPTED
        new.append(Instance(rec.id, li.class_name, li.mask, state=state, origin=li.origin, score=li.score,
                            iscrowd=li.iscrowd, attributes=dict(li.attributes)))
    if new:
        store.add_instances(new)
        report.instances_added += len(new)
        if any(i.state is InstanceState.ACCEPTED for i in new) and rec.status is not ImageStatus.DONE:
            # imported labels are someone's finished work: the image is labelled
            store.set_image_status(rec.id, ImageStatus.DONE)


def export_project(
    store: ProjectStore,
    fmt: str,
    out_path: str | Path,
    *,
    states: Sequence[str] = ("accepted",),
    polygons: bool = False,
    progress: Progress = None,
) -> ExportReport:
    """Export the instances in ``states`` of every project image to ``out_path``.

    ``out_path`` is a file for coco and cvat, a folder for the others. Images that
    could not be read (no size) are left out and reported; images without
    instances are written (an empty label is a label). ``polygons`` applies to COCO.
    """
    entry = _check_format(fmt)
    wanted = [InstanceState(s) for s in states]
    report = ExportReport(fmt, str(out_path))
    images: list[LabelledImage] = []
    for rec in store.images():
        if rec.error or rec.height <= 0 or rec.width <= 0:
            report.warnings.append(f"{rec.path}: not exported, the image could not be read ({rec.error or 'no size'})")
            continue
        insts = [
            LabelledInstance(i.class_name, i.mask, score=i.score, origin=i.origin, iscrowd=i.iscrowd,
                             state=InstanceState(i.state).value, attributes=dict(i.attributes))
            for i in store.instances(rec.id, wanted)
        ]
        images.append(LabelledImage(rec.path, (rec.height, rec.width), insts, Path(store.root) / rec.path,
                                    tags=list(rec.tags)))
        report.instances += len(insts)
    report.images = len(images)
    palette: Palette = store.palette
    report.warnings.extend(entry.exporter(images, palette, Path(out_path), polygons=polygons, progress=progress))
    return report
