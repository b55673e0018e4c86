#!/usr/bin/env python3
"""The desktop shell's side of the session bus, recording instead of drawing: a notification
server (org.freedesktop.Notifications) that logs every notification it is asked to show, one
JSON line each, and a dock that speaks the Unity launcher API (owns com.canonical.Unity) and
logs every launcher-entry update (the progress on the app's icon). The GUI tests read both logs.

usage: notification_server.py LOG LAUNCHER_LOG   -- prints "ready" once it owns both names.
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
    loop = GLib.MainLoop()

    def on_launcher_update(_conn, _sender, _path, _iface, _signal, params):
        app_uri, properties = params.unpack()
        with open(launcher_log_path, "a", encoding="utf-8") as log:
            log.write(json.dumps({"app_uri": app_uri, **properties}) + "\n")

    def on_bus(conn, name):
        if name == "org.freedesktop.Notifications":
            conn.register_object("/org/freedesktop/Notifications", node.interfaces[0], on_call, None, None)
        else:
            conn.signal_subscribe(None, "com.canonical.Unity.LauncherEntry", "Update", None, None,
                                  Gio.DBusSignalFlags.NONE, on_launcher_update)

    def on_name(_conn, name):
        owned.add(name)
        if len(owned) == 2:
            print("ready", flush=True)

    def on_lost(_conn, _name):
        print("name-lost", flush=True)
        loop.quit()

    for name in ("org.freedesktop.Notifications", "com.canonical.Unity"):
        Gio.bus_own_name(Gio.BusType.SESSION, name, Gio.BusNameOwnerFlags.NONE, on_bus, on_name, on_lost)
    loop.run()


if __name__ == "__main__":
    main()
