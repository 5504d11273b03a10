"""Import and export of annotation formats: COCO, labelme, CVAT XML and mask images.

Each format module has ``import_<fmt>(path, ...) -> ImportResult`` and
``export_<fmt>(images, palette, out, ...) -> warnings``; ``project_io`` connects
them to a project (``import_into_project``, ``export_project``, ``FORMATS``).
Every importer checks what it reads at its edge against the numbers of
``annotation.formats.limits`` (``current_limits()`` names them all) and says what is
wrong in one ``FormatError`` line; ``ImportReport.finished_with_problems`` says
whether something of a file did not make it into the project.
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
