"""One layer-tree group per query inside "GeoBridge results", named so that a person can tell
runs apart, the newest on top and the only one shown.

An analyst locating photo after photo gets, per run, a group such as "drone_036.jpg 14:03:22"
(or '"a church beside a…" 14:03:22' for a description) holding that run's candidates,
footprints and heat maps; the earlier runs' groups are collapsed and hidden, so their heat
maps no longer tint the map, but stay in the project to be shown again. Main thread only.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

from qgis.core import QgsLayerTreeGroup, QgsLayerTreeLayer, QgsMapLayer, QgsProject

TEXT_CHARS = 28  # a description's share of a layer name: enough to recognise it


def query_label(
    photos: Sequence[Path | str] = (), text: str | None = None, when: dt.datetime | None = None
) -> str:
    """A readable name for a run: the photo's file name (and how many more), else the start of
    the description, then the time of day."""
    stamp = (when or dt.datetime.now()).strftime("%H:%M:%S")
    if photos:
        what = Path(photos[0]).name + (f" +{len(photos) - 1}" if len(photos) > 1 else "")
    else:
        words = " ".join((text or "").split())
        if len(words) > TEXT_CHARS:
            words = words[:TEXT_CHARS].rsplit(" ", 1)[0] + "…"
        what = f'"{words}"'
    return f"{what} {stamp}"


def _results_group(project: QgsProject) -> QgsLayerTreeGroup:
    from .layers import results_group

    return results_group(project)


def _unique(label: str, parent: QgsLayerTreeGroup) -> str:
    """`label`, or `label (n)` when an earlier run's group has that name. Group names are
    enough: a run's layer names are its group's name and their kind."""
    taken = {child.name() for child in parent.children()}
    name, n = label, 1
    while name in taken:
        n += 1
        name = f"{label} ({n})"
    return name


class QueryGroup:
    """The group of one run's layers, made on first use. Processing loads a run's layers one
    by one (each through its own post-processor), so they share one of these."""

    def __init__(self, label: str):
        self.label = label
        self.name: str | None = None

    def reserve(self, project: QgsProject | None = None) -> str:
        """The group's name in `project` (the label, made unique): the name to give the run's
        layers. The group itself is made when the first layer is filed."""
        project = project or QgsProject.instance()
        if self.name is None:
            self.name = _unique(self.label, _results_group(project))
        return self.name

    def file(self, layers: Sequence[QgsMapLayer], project: QgsProject | None = None) -> None:
        """Move `layers` (already in the results group, in drawing order) into this run's
        group at the top, named after it; collapse and hide every earlier run."""
        from .layers import KIND_PROPERTY, KINDS

        project = project or QgsProject.instance()
        name = self.reserve(project)
        parent = _results_group(project)
        group = parent.findGroup(name)
        if group is None:
            group = parent.insertGroup(0, name)
            for child in parent.children():
                if child is not group:
                    child.setItemVisibilityChecked(False)
                    child.setExpanded(False)
            group.setExpanded(True)
        root = project.layerTreeRoot()
        for layer in layers:
            if layer.name().startswith(self.label) and self.label != name:
                layer.setName(name + layer.name()[len(self.label) :])
            node = root.findLayer(layer.id())
            if node is None or node.parent() is group:
                continue
            kind = layer.customProperty(KIND_PROPERTY)
            rank = KINDS.index(kind) if kind in KINDS else len(KINDS)
            position = len(group.children())
            for i, child in enumerate(group.children()):
                other = child.layer() if isinstance(child, QgsLayerTreeLayer) else None
                other_kind = other.customProperty(KIND_PROPERTY) if other is not None else None
                if other_kind in KINDS and KINDS.index(other_kind) > rank:
                    position = i
                    break
            group.insertChildNode(position, node.clone())
            node.parent().removeChildNode(node)
