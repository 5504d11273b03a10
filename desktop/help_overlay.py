"""Help overlay (F1 or ?): every action with its shortcut, built from the actions
themselves so it never drifts from the menus."""
from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import QLabel


class HelpOverlay(QLabel):
    def __init__(self, parent):
        super().__init__(parent)
        self.setObjectName("help")
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setStyleSheet("background: rgba(0,0,0,200); color: white; font-size: 13px; padding: 20px;")
        self.setTextFormat(Qt.TextFormat.RichText)
        self.hide()

    def show_for(self, actions) -> None:
        rows = []
        for a in actions:
            keys = ", ".join(s.toString(QKeySequence.SequenceFormat.NativeText) for s in a.shortcuts())
            if keys:
                rows.append(f"<tr><td align='right'><b>{keys}</b>&nbsp;&nbsp;</td><td>{a.text().replace('&', '')}</td></tr>")
        extra = [
            ("Wheel", "zoom about the cursor"), ("Middle drag / Space+drag", "pan"),
            ("Ctrl+wheel", "brush radius"), ("Double-click", "select and centre an instance"),
            ("Enter / Backspace / Esc", "polygon: close / remove last vertex / cancel"),
            ("Shift / Ctrl on closing", "polygon: add to / cut from the selection"),
        ]
        rows += [f"<tr><td align='right'><b>{k}</b>&nbsp;&nbsp;</td><td>{v}</td></tr>" for k, v in extra]
        half = (len(rows) + 1) // 2
        self.setText(
            "<h3>Keyboard shortcuts</h3><table><tr><td valign='top'><table>" + "".join(rows[:half])
            + "</table></td><td width='30'></td><td valign='top'><table>" + "".join(rows[half:])
            + "</table></td></tr></table><p>F1, ? or Esc closes this</p>"
        )
        self.setGeometry(self.parent().rect())
        self.raise_()
        self.show()

    def keyPressEvent(self, event) -> None:
        self.hide()

    def mousePressEvent(self, event) -> None:
        self.hide()
