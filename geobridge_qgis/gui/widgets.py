"""Small widget helpers the dock's parts share: word-wrapped labels, spin boxes that leave the
mouse wheel to the scrolling panel, collapsible groups that remember their state through the
plugin's settings."""

from __future__ import annotations

from collections.abc import Callable

from qgis.gui import QgsCollapsibleGroupBox
from qgis.PyQt.QtCore import QCoreApplication, QEvent, QObject, Qt
from qgis.PyQt.QtWidgets import (
    QAbstractScrollArea,
    QAbstractSpinBox,
    QComboBox,
    QLabel,
    QSizePolicy,
    QWidget,
)


def wrapped_label(text: str, parent: QWidget, lines: int = 0) -> QLabel:
    """A label that wraps at any width, reserving `lines` lines of height (a scroll area sizes
    its body from minimum heights, which a word-wrapped label understates)."""
    label = QLabel(text, parent)
    label.setWordWrap(True)
    label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
    label.setMinimumWidth(1)
    if lines:
        label.setMinimumHeight(lines * label.fontMetrics().lineSpacing() + 4)
    return label


class WheelGuard(QObject):
    """Spin boxes and combo boxes take the mouse wheel only once they have the keyboard focus
    (a click or Tab): scrolling the dock over one must not change the number of candidates.
    An unfocused widget's wheel event goes to the scroll area around it instead."""

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() != QEvent.Type.Wheel or not isinstance(watched, QWidget):
            return False
        if watched.hasFocus():
            return False
        parent = watched.parentWidget()
        while parent is not None and not isinstance(parent, QAbstractScrollArea):
            parent = parent.parentWidget()
        if parent is not None:
            QCoreApplication.sendEvent(parent.verticalScrollBar(), event)
        return True


def guard_wheel(root: QWidget, guard: WheelGuard | None = None) -> WheelGuard:
    """Install one WheelGuard on every spin box and combo box under `root`; the guard (keep it:
    an event filter must outlive the widgets it watches)."""
    guard = guard or WheelGuard(root)
    for kind in (QAbstractSpinBox, QComboBox):
        for widget in root.findChildren(kind):
            # The wheel must not give focus either, or the second notch would change the value.
            widget.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
            widget.installEventFilter(guard)
    return guard


def collapsible_group(
    title: str,
    parent: QWidget,
    expanded: bool,
    remember: Callable[[bool], None] | None = None,
) -> QgsCollapsibleGroupBox:
    """A QGIS collapsible group, open or closed as `expanded` says; `remember(expanded)` is
    called when the user opens or closes it. QGIS's own state saving is off: every key the
    plugin writes goes through its settings module."""
    box = QgsCollapsibleGroupBox(title, parent)
    box.setSaveCollapsedState(False)
    box.setSaveCheckedState(False)
    box.setCollapsed(not expanded)
    if remember is not None:
        box.collapsedStateChanged.connect(lambda collapsed: remember(not collapsed))
    return box
