#!/usr/bin/env python3
"""A small GTK3 window that offers one file as a drag source (text/uri-list), the way a file
manager does, so the GUI test can drag a real file onto the Dropship window with xdotool.

usage: drag_source.py FILE X Y SIZE [MORE_FILES...]   -- prints "ready" once the window is on
screen. Every FILE (a file or a folder) goes into the one drag, as a file manager's selection.
"""
import os
import sys

import gi

gi.require_version("Gtk", "3.0")
gi.require_version("Gdk", "3.0")
from gi.repository import Gdk, GLib, Gtk  # noqa: E402


def main() -> None:
    path, x, y, size = os.path.abspath(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    more = [os.path.abspath(p) for p in sys.argv[5:]]
    uris = [GLib.filename_to_uri(p, None) for p in [path, *more]]

    window = Gtk.Window(title="dropship-drag-source")
    window.set_decorated(False)
    window.set_default_size(size, size)
    window.move(x, y)

    area = Gtk.EventBox()
    area.add(Gtk.Label(label=f"{os.path.basename(path)} (+{len(more)})" if more else os.path.basename(path)))
    window.add(area)

    area.drag_source_set(Gdk.ModifierType.BUTTON1_MASK, [], Gdk.DragAction.COPY)
    area.drag_source_add_uri_targets()
    area.connect("drag-data-get", lambda _w, _ctx, data, _info, _time: data.set_uris(uris))
    area.connect("drag-end", lambda *_: print("drag-end", flush=True))

    def on_mapped(*_args) -> bool:
        # Ready once the X server has the window where we asked for it.
        print("ready", flush=True)
        return False

    window.connect("map-event", on_mapped)
    window.connect("destroy", Gtk.main_quit)
    window.show_all()
    Gtk.main()


if __name__ == "__main__":
    main()
