"""The start page shown without a project: recent projects and "Open folder"."""
from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QLabel, QListWidget, QPushButton, QVBoxLayout, QWidget

from desktop import settings


class StartPage(QWidget):
    open_project = Signal(str)
    open_folder = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("start")
        lay = QVBoxLayout(self)
        lay.addWidget(QLabel("<h2>Specula</h2>Open a folder of images to label it."))
        self.button = QPushButton("Open folder…", objectName="start.open")
        self.button.clicked.connect(self.open_folder.emit)
        lay.addWidget(self.button)
        lay.addWidget(QLabel("Recent projects"))
        self.recent = QListWidget(objectName="start.recent")
        self.recent.itemActivated.connect(lambda it: self.open_project.emit(it.text()))
        lay.addWidget(self.recent)
        self.refresh()

    def refresh(self) -> None:
        self.recent.clear()
        self.recent.addItems(settings.recent_projects())
