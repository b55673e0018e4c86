#!/usr/bin/env python3
"""A desktop notification server (org.freedesktop.Notifications) on the session bus that
records every notification it is asked to show, one JSON line each, instead of drawing it:
the GUI tests count the app's notifications with it.

usage: notification_server.py LOG   -- prints "ready" once it owns the name.
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
    log_path = sys.argv[1]
    counter = [0]

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

    def on_bus(conn, _name):
        conn.register_object("/org/freedesktop/Notifications", node.interfaces[0], on_call, None, None)

    def on_name(_conn, _name):
        print("ready", flush=True)

    def on_lost(_conn, _name):
        print("name-lost", flush=True)
        loop.quit()

    Gio.bus_own_name(Gio.BusType.SESSION, "org.freedesktop.Notifications", Gio.BusNameOwnerFlags.NONE,
                     on_bus, on_name, on_lost)
    loop.run()


if __name__ == "__main__":
    main()
