#!/usr/bin/env python3
"""The desktop shell's side of the session bus, recording instead of drawing: a notification
server (org.freedesktop.Notifications) that logs every notification it is asked to show, one
JSON line each, a dock that speaks the Unity launcher API (owns com.canonical.Unity) and
logs every launcher-entry update (the progress on the app's icon), and a tray (the
StatusNotifierWatcher that tray icons register with) whose menu items the tests click as a
person would: `dev.dropship.TestTray.Click(label)` sends the item's menu the dbusmenu "clicked"
event that a panel sends. The GUI tests read both logs.

usage: notification_server.py LOG LAUNCHER_LOG   -- prints "ready" once it owns all three names.
"""
import json
import sys

from gi.repository import Gio, GLib  # noqa: E402

INTERFACE = """
<node>
  <interface name="org.freedesktop.Notifications">
    <method name="GetCapabilities"><arg type="as" direction="out"/></method>
    <method name="Notify">
      <arg type="s" direction="in"/><arg type="u" direction="in"/><arg type="s" direction="in"/>
      <arg type="s" direction="in"/><arg type="s" direction="in"/><arg type="as" direction="in"/>
      <arg type="a{sv}" direction="in"/><arg type="i" direction="in"/>
      <arg type="u" direction="out"/>
    </method>
    <method name="CloseNotification"><arg type="u" direction="in"/></method>
    <method name="GetServerInformation">
      <arg type="s" direction="out"/><arg type="s" direction="out"/>
      <arg type="s" direction="out"/><arg type="s" direction="out"/>
    </method>
    <signal name="NotificationClosed"><arg type="u"/><arg type="u"/></signal>
    <signal name="ActionInvoked"><arg type="u"/><arg type="s"/></signal>
  </interface>
</node>
"""

TRAY_INTERFACE = """
<node>
  <interface name="org.kde.StatusNotifierWatcher">
    <method name="RegisterStatusNotifierItem"><arg type="s" direction="in"/></method>
    <method name="RegisterStatusNotifierHost"><arg type="s" direction="in"/></method>
    <property name="RegisteredStatusNotifierItems" type="as" access="read"/>
    <property name="IsStatusNotifierHostRegistered" type="b" access="read"/>
    <property name="ProtocolVersion" type="i" access="read"/>
    <signal name="StatusNotifierItemRegistered"><arg type="s"/></signal>
  </interface>
  <interface name="dev.dropship.TestTray">
    <method name="Click"><arg type="s" direction="in"/></method>
  </interface>
</node>
"""


def menu_item_id(layout, label):
    """The id of the item labelled `label` in a dbusmenu layout `(id, properties, children)`."""
    item_id, properties, children = layout
    if properties.get("label", "").replace("_", "") == label:
        return item_id
    for child in children:
        found = menu_item_id(child, label)
        if found is not None:
            return found
    return None


def click_menu_item(conn, name, path, label):
    """Clicks `label` in the menu of the tray icon at `name` `path`; False when it has none."""
    menu = conn.call_sync(name, path, "org.freedesktop.DBus.Properties", "Get",
                          GLib.Variant("(ss)", ("org.kde.StatusNotifierItem", "Menu")),
                          None, Gio.DBusCallFlags.NONE, 5000, None).unpack()[0]
    _revision, layout = conn.call_sync(name, menu, "com.canonical.dbusmenu", "GetLayout",
                                       GLib.Variant("(iias)", (0, -1, ["label"])),
                                       None, Gio.DBusCallFlags.NONE, 5000, None).unpack()
    item_id = menu_item_id(layout, label)
    if item_id is None:
        return False
    conn.call_sync(name, menu, "com.canonical.dbusmenu", "Event",
                   GLib.Variant("(isvu)", (item_id, "clicked", GLib.Variant("i", 0), 0)),
                   None, Gio.DBusCallFlags.NONE, 5000, None)
    return True


def tray_watcher(items):
    """Method calls and properties of the StatusNotifierWatcher; `items` holds (bus name, path)."""

    def on_call(conn, sender, _path, iface, method, params, invocation):
        if method == "RegisterStatusNotifierItem":
            (service,) = params.unpack()
            # Ayatana's indicators register their object path; others their bus name.
            path = service if service.startswith("/") else "/StatusNotifierItem"
            items.append((sender, path))
            conn.emit_signal(None, "/StatusNotifierWatcher", iface, "StatusNotifierItemRegistered",
                             GLib.Variant("(s)", (sender + path,)))
            invocation.return_value(None)
        elif method == "RegisterStatusNotifierHost":
            invocation.return_value(None)
        elif method == "Click":
            (label,) = params.unpack()
            problems = []
            # Icons of apps that have quit stay listed: they no longer answer.
            for name, path in items:
                try:
                    if click_menu_item(conn, name, path, label):
                        invocation.return_value(None)
                        return
                except GLib.Error as e:
                    problems.append(e.message)
            invocation.return_dbus_error("dev.dropship.TestTray.NoSuchItem",
                                         f"no tray menu item {label!r} among {len(items)} tray icons: {problems}")

    def on_property(_conn, _sender, _path, _iface, name):
        if name == "RegisteredStatusNotifierItems":
            return GLib.Variant("as", [n + p for n, p in items])
        if name == "IsStatusNotifierHostRegistered":
            return GLib.Variant("b", True)
        return GLib.Variant("i", 0)

    return on_call, on_property


def main() -> None:
    log_path, launcher_log_path = sys.argv[1], sys.argv[2]
    counter = [0]
    owned = set()

    def on_call(_conn, _sender, _path, _iface, method, params, invocation):
        if method == "GetCapabilities":
            invocation.return_value(GLib.Variant("(as)", (["body"],)))
        elif method == "Notify":
            app, _replaces, _icon, summary, body = params.unpack()[:5]
            counter[0] += 1
            with open(log_path, "a", encoding="utf-8") as log:
                log.write(json.dumps({"app": app, "summary": summary, "body": body}) + "\n")
            invocation.return_value(GLib.Variant("(u)", (counter[0],)))
        elif method == "CloseNotification":
            invocation.return_value(None)
        elif method == "GetServerInformation":
            invocation.return_value(GLib.Variant("(ssss)", ("dropship-test", "dropship", "1", "1.2")))

    node = Gio.DBusNodeInfo.new_for_xml(INTERFACE)
    tray_node = Gio.DBusNodeInfo.new_for_xml(TRAY_INTERFACE)
    tray_call, tray_property = tray_watcher([])
    loop = GLib.MainLoop()

    def on_launcher_update(_conn, _sender, _path, _iface, _signal, params):
        app_uri, properties = params.unpack()
        with open(launcher_log_path, "a", encoding="utf-8") as log:
            log.write(json.dumps({"app_uri": app_uri, **properties}) + "\n")

    def on_bus(conn, name):
        if name == "org.freedesktop.Notifications":
            conn.register_object("/org/freedesktop/Notifications", node.interfaces[0], on_call, None, None)
        elif name == "org.kde.StatusNotifierWatcher":
            for interface in tray_node.interfaces:
                conn.register_object("/StatusNotifierWatcher", interface, tray_call, tray_property, None)
        else:
            conn.signal_subscribe(None, "com.canonical.Unity.LauncherEntry", "Update", None, None,
                                  Gio.DBusSignalFlags.NONE, on_launcher_update)

    def on_name(_conn, name):
        owned.add(name)
        if len(owned) == 3:
            print("ready", flush=True)

    def on_lost(_conn, _name):
        print("name-lost", flush=True)
        loop.quit()

    for name in ("org.freedesktop.Notifications", "com.canonical.Unity", "org.kde.StatusNotifierWatcher"):
        Gio.bus_own_name(Gio.BusType.SESSION, name, Gio.BusNameOwnerFlags.NONE, on_bus, on_name, on_lost)
    loop.run()


if __name__ == "__main__":
    main()
