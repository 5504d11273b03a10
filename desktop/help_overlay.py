"""Help overlay (F1 or ?): every action with its keys, grouped as the key table groups
them (desktop.keymap), built from the actions themselves so it never drifts from the
menus. It covers the window with an opaque sheet: text over panels is unreadable."""
from __future__ import annotations

from html import escape

from PySide6.QtCore import Qt
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import QLabel

from desktop import keymap

GESTURES = (
    ("Wheel", "zoom about the cursor"), ("Middle drag / Space+drag", "pan"),
    ("Ctrl+wheel", "brush radius"), ("Double-click", "select and centre an instance"),
    ("Enter / Backspace / Esc", "polygon: close / remove last vertex / cancel"),
    ("Shift / Ctrl on closing", "polygon: add to / cut from the selection"),
    ("Drag a vertex", "polygon: move it before closing"),
)


class HelpOverlay(QLabel):
    def __init__(self, parent):
        super().__init__(parent)
        self.setObjectName("help")
        self.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignHCenter)
        self.setAutoFillBackground(True)
        self.setStyleSheet("background: rgb(24, 24, 24); color: white; font-size: 13px; padding: 16px;")
        self.setTextFormat(Qt.TextFormat.RichText)
        self.hide()

    def show_for(self, actions) -> None:
        groups: dict[str, list[str]] = {g: [] for g in keymap.GROUPS}
        for a in actions:
            keys = ", ".join(s.toString(QKeySequence.SequenceFormat.NativeText) for s in a.shortcuts())
            if not keys or not a.isVisible():  # no key, or a class digit the palette does not use
                continue
            row = f"<tr><td align='right'><b>{escape(keys)}</b>&nbsp;&nbsp;</td><td>{escape(a.text().replace('&', ''))}</td></tr>"
            groups.setdefault(keymap.group_of(a.objectName()), []).append(row)
        groups["Gestures"] = [f"<tr><td align='right'><b>{k}</b>&nbsp;&nbsp;</td><td>{v}</td></tr>" for k, v in GESTURES]
        blocks = [f"<h4>{g}</h4><table>{''.join(rows)}</table>" for g, rows in groups.items() if rows]
        cols = 3
        per = (len(blocks) + cols - 1) // cols
        columns = ["".join(blocks[i * per:(i + 1) * per]) for i in range(cols)]
        self.setText("<h3>Keys</h3><table><tr>" + "".join(f"<td valign='top' style='padding-right:24px'>{c}</td>"
                                                            for c in columns)
                     + "</tr></table><p>F1, ? or Esc closes this · Help › Change keys… changes them</p>")
        self.setGeometry(self.parent().rect())
        self.raise_()
        self.show()

    def keyPressEvent(self, event) -> None:
        self.hide()

    def mousePressEvent(self, event) -> None:
        self.hide()
