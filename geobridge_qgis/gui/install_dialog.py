"""The first-use dependency installer: a dialog that runs pip (see `..deps`) in a QProcess.

pip runs asynchronously; its output streams into a read-only text box and the dialog says
whether it worked. On success the private folder is activated, so the engine imports at once.
"""

from __future__ import annotations

import os
import shlex
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from qgis.PyQt.QtCore import QProcess, QProcessEnvironment, pyqtSignal
from qgis.PyQt.QtGui import QFont
from qgis.PyQt.QtWidgets import (
    QDialog,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from .. import deps


class InstallDialog(QDialog):
    """Lists what is missing and the exact pip command; "Install" runs it.

    `state` is "ready", "running", "succeeded" or "failed"; `finished_install(bool)` is
    emitted when pip ends."""

    finished_install = pyqtSignal(bool)

    def __init__(
        self,
        missing: Sequence[str],
        command: Sequence[str],
        folder: str | os.PathLike,
        parent: QWidget | None = None,
    ):
        super().__init__(parent)
        self.setObjectName("GeoBridgeInstallDialog")
        self.setWindowTitle("GeoBridge: install Python packages")
        self.missing = list(missing)
        self.command = list(command)
        self.folder = Path(folder)
        self.state = "ready"
        self.process: QProcess | None = None

        layout = QVBoxLayout(self)
        self.intro = QLabel(
            "GeoBridge needs Python packages that this QGIS does not have:<br><b>"
            + ", ".join(self.missing)
            + f"</b><br>They will be installed with pip into <tt>{self.folder}</tt> "
            "(binary wheels only; QGIS's own packages are pinned and never upgraded). "
            "pip downloads them from the Python Package Index.",
            self,
        )
        self.intro.setWordWrap(True)
        layout.addWidget(self.intro)
        layout.addWidget(QLabel("Command:", self))
        self.command_view = QPlainTextEdit(shlex.join(self.command), self)
        self.command_view.setReadOnly(True)
        self.command_view.setMaximumHeight(70)
        layout.addWidget(self.command_view)
        self.output = QPlainTextEdit(self)
        self.output.setObjectName("GeoBridgeInstallOutput")
        self.output.setReadOnly(True)
        mono = QFont("monospace")
        mono.setStyleHint(QFont.StyleHint.TypeWriter)
        self.output.setFont(mono)
        self.output.setPlaceholderText("pip's output shows here")
        layout.addWidget(self.output, 1)
        self.status = QLabel("", self)
        self.status.setWordWrap(True)
        layout.addWidget(self.status)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        self.install_button = QPushButton("Install", self)
        self.install_button.setObjectName("GeoBridgeInstall")
        self.install_button.setDefault(True)
        self.install_button.clicked.connect(self.start)
        self.close_button = QPushButton("Cancel", self)
        self.close_button.clicked.connect(self._close_clicked)
        buttons.addWidget(self.install_button)
        buttons.addWidget(self.close_button)
        layout.addLayout(buttons)
        self.resize(720, 480)

    # ------------------------------------------------------------ pip

    def start(self) -> bool:
        """Start pip (asynchronously); False when it already runs or ran."""
        if self.state in ("running", "succeeded"):
            return False
        self.folder.mkdir(parents=True, exist_ok=True)
        self.output.clear()
        process = QProcess(self)
        env = QProcessEnvironment.systemEnvironment()
        env.insert("PIP_DISABLE_PIP_VERSION_CHECK", "1")
        env.insert("PYTHONUNBUFFERED", "1")
        env.insert("PYTHONNOUSERSITE", "1")  # the user's ~/.local must not satisfy requirements
        process.setProcessEnvironment(env)
        process.setProcessChannelMode(QProcess.ProcessChannelMode.MergedChannels)
        process.readyReadStandardOutput.connect(self._read)
        process.finished.connect(self._finished)
        process.errorOccurred.connect(self._error)
        self.process = process
        self.state = "running"
        self.install_button.setEnabled(False)
        self.close_button.setText("Stop")
        self._set_status("Installing… (this can take a few minutes)")
        self._append("$ " + shlex.join(self.command) + "\n")
        process.start(self.command[0], self.command[1:])
        return True

    def _append(self, text: str) -> None:
        self.output.moveCursor(self.output.textCursor().End)
        self.output.insertPlainText(text)
        self.output.ensureCursorVisible()

    def _read(self) -> None:
        if self.process is not None:
            data = bytes(self.process.readAllStandardOutput())
            self._append(data.decode("utf-8", errors="replace"))

    def _error(self, error: Any) -> None:
        if error == QProcess.ProcessError.FailedToStart and self.state == "running":
            self._append(f"cannot start {self.command[0]}: {self.process.errorString()}\n")
            self._end(False)

    def _finished(self, code: int, status: Any) -> None:
        if self.state != "running":
            return
        self._read()
        ok = status == QProcess.ExitStatus.NormalExit and code == 0
        if not ok:
            self._append(f"\npip ended with exit code {code}\n")
        self._end(ok)

    def _end(self, ok: bool) -> None:
        self.state = "succeeded" if ok else "failed"
        self.close_button.setText("Close")
        if ok:
            deps.activate(self.folder)
            still = deps.missing()
            if still:  # pip said yes but the imports still fail (e.g. another Python's wheels)
                self.state = "failed"
                ok = False
                self._set_status(
                    "pip finished but these still cannot be imported: " + ", ".join(still),
                    error=True,
                )
            else:
                self._set_status("Installed. GeoBridge is ready.")
        else:
            hint = ""
            if "No module named pip" in self.output.toPlainText():
                hint = " This Python has no pip: install it (e.g. python3-pip) and try again."
            self._set_status("Installation failed: see pip's output above." + hint, error=True)
            self.install_button.setText("Try again")
            self.install_button.setEnabled(True)
        self.finished_install.emit(ok)

    def _set_status(self, text: str, error: bool = False) -> None:
        self.status.setText(text)
        self.status.setStyleSheet("color: #b00;" if error else "color: #070;" if text else "")

    def _close_clicked(self) -> None:
        if self.state == "running" and self.process is not None:
            self.process.kill()  # _finished reports the failure
            return
        if self.state == "succeeded":
            self.accept()
        else:
            self.reject()

    def closeEvent(self, event: Any) -> None:
        if self.state == "running" and self.process is not None:
            self.process.kill()
            self.process.waitForFinished(3000)
        super().closeEvent(event)

    def succeeded(self) -> bool:
        return self.state == "succeeded"


def make_install_dialog(
    parent: QWidget | None = None,
    folder: str | os.PathLike | None = None,
    python: str | None = None,
) -> InstallDialog | None:
    """The dialog for what this QGIS lacks (its constraints file written to a temporary
    folder); None when nothing is missing. When QGIS's own Python cannot be found, the dialog
    says so, shows the command to run by hand and cannot install."""
    target = deps.private_folder(folder)
    absent, requirements, constraints = deps.plan(folder)
    if not absent:
        return None
    fd, name = tempfile.mkstemp(prefix="geobridge-constraints-", suffix=".txt")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(constraints)
    try:
        command = deps.pip_command(target, requirements, name, python=python)
    except deps.PythonNotFound as e:
        # No interpreter proved to be QGIS's: show the command to run by hand, never a guess.
        dialog = InstallDialog(absent, e.command, target, parent)
        dialog.install_button.setEnabled(False)
        dialog._set_status(str(e), error=True)
        return dialog
    return InstallDialog(absent, command, target, parent)


def ensure_dependencies(parent: QWidget | None = None, folder: str | os.PathLike | None = None):
    """At first use, before the engine is imported: True when the engine's packages import.

    Activates the private folder; if anything is still missing, shows the install dialog
    (modal, its own event loop: pip runs in a QProcess, the main thread never blocks) and
    returns whether the install worked. Processing algorithms use
    `deps.require_for_processing` instead (no dialog)."""
    deps.activate(folder)
    if not deps.missing():
        return True
    dialog = make_install_dialog(parent, folder)
    if dialog is None:
        return True
    try:
        dialog.exec()
        return dialog.succeeded() and not deps.missing()
    finally:
        dialog.deleteLater()
