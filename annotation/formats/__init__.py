"""Import and export of annotation formats: COCO, labelme, CVAT XML and mask images.

Each format module has ``import_<fmt>(path, ...) -> ImportResult`` and
``export_<fmt>(images, palette, out, ...) -> warnings``; ``project_io`` connects
them to a project (``import_into_project``, ``export_project``, ``FORMATS``).
"""
from annotation.formats.common import (
    FormatError,
    ImportResult,
    LabelledImage,
    LabelledInstance,
)
from annotation.formats.project_io import (
    FORMATS,
    ExportReport,
    ImportReport,
    export_project,
    import_into_project,
)

__all__ = [
    "FORMATS",
    "ExportReport",
    "FormatError",
    "ImportReport",
    "ImportResult",
    "LabelledImage",
    "LabelledInstance",
    "export_project",
    "import_into_project",
]
