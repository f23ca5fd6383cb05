"""The D-Bus API of apt-ostreed: names, object paths, errors and introspection XML.

Shared by the daemon and by `apt_ostree.client.dbus`; docs/dbus.md documents it.
"""

from __future__ import annotations

from apt_ostree.requests import METHODS

BUS_NAME = "org.aptostree.dev"
PREFIX = "/org/aptostree/dev"
SYSROOT_PATH = f"{PREFIX}/Sysroot"
OS_PATH_PREFIX = f"{PREFIX}/OS/"
TRANSACTION_PATH_PREFIX = f"{PREFIX}/Transaction/"

SYSROOT_INTERFACE = "org.aptostree.dev.Sysroot"
OS_INTERFACE = "org.aptostree.dev.OS"
TRANSACTION_INTERFACE = "org.aptostree.dev.Transaction"
PROPERTIES_INTERFACE = "org.freedesktop.DBus.Properties"

ERROR_PREFIX = "org.aptostree.dev.Error."
BUSY = ERROR_PREFIX + "Busy"
ACCESS_DENIED = ERROR_PREFIX + "AccessDenied"
INVALID_ARGUMENT = ERROR_PREFIX + "InvalidArgument"
CANNOT_CANCEL = ERROR_PREFIX + "CannotCancel"
FAILED = ERROR_PREFIX + "Failed"

NO_TRANSACTION = "/"


class MethodError(Exception):
    """A method call fails with the D-Bus error `name` and a one-line message."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name


def os_object_path(osname: str) -> str:
    """The OS object of `osname`; bytes outside [A-Za-z0-9] become `_xx` (as systemd's
    bus labels), so that any osname makes a valid object path element."""
    label = "".join(c if c.isascii() and c.isalnum() else f"_{ord(c):02x}" for c in osname)
    return OS_PATH_PREFIX + (label or "_")


def transaction_path(number: int) -> str:
    return f"{TRANSACTION_PATH_PREFIX}{number}"


def _os_methods() -> str:
    """The transaction methods, from the one table the client and the daemon share."""
    out = []
    for m in METHODS.values():
        args = "".join(
            f'\n      <arg type="{kind}" name="{name}" direction="in"/>' for name, kind in m.args
        )
        out.append(
            f'    <method name="{m.name}">{args}\n'
            '      <arg type="a{sv}" name="options" direction="in"/>\n'
            '      <arg type="o" name="transaction" direction="out"/>\n'
            "    </method>"
        )
    return "\n".join(out)


INTROSPECTION = f"""
<node>
  <interface name="{SYSROOT_INTERFACE}">
    <method name="GetStatus">
      <arg type="s" name="status" direction="out"/>
    </method>
    <method name="Reload"/>
    <method name="DbList">
      <arg type="as" name="args" direction="in"/>
      <arg type="s" name="result" direction="out"/>
    </method>
    <method name="DbDiff">
      <arg type="s" name="from" direction="in"/>
      <arg type="s" name="to" direction="in"/>
      <arg type="a{{sv}}" name="options" direction="in"/>
      <arg type="s" name="result" direction="out"/>
    </method>
    <method name="DbVersion">
      <arg type="as" name="revisions" direction="in"/>
      <arg type="s" name="result" direction="out"/>
    </method>
    <property name="Booted" type="b" access="read"/>
    <property name="Path" type="s" access="read"/>
    <property name="DefaultOS" type="o" access="read"/>
    <property name="ActiveTransaction" type="o" access="read"/>
    <property name="AutomaticUpdatePolicy" type="s" access="read"/>
  </interface>
  <interface name="{OS_INTERFACE}">
{_os_methods()}
    <method name="GetKernelArgs">
      <arg type="a{{sv}}" name="options" direction="in"/>
      <arg type="s" name="kargs" direction="out"/>
    </method>
    <method name="Search">
      <arg type="as" name="terms" direction="in"/>
      <arg type="s" name="result" direction="out"/>
    </method>
    <property name="Name" type="s" access="read"/>
  </interface>
  <interface name="{TRANSACTION_INTERFACE}">
    <method name="Start"/>
    <method name="Cancel"/>
    <signal name="Message">
      <arg type="s" name="text"/>
    </signal>
    <signal name="Info">
      <arg type="s" name="text"/>
    </signal>
    <signal name="TaskBegin">
      <arg type="s" name="text"/>
    </signal>
    <signal name="TaskEnd">
      <arg type="s" name="text"/>
    </signal>
    <signal name="PercentProgress">
      <arg type="s" name="text"/>
      <arg type="u" name="percent"/>
    </signal>
    <signal name="Result">
      <arg type="s" name="document"/>
    </signal>
    <signal name="Finished">
      <arg type="b" name="success"/>
      <arg type="s" name="error"/>
    </signal>
    <property name="Method" type="s" access="read"/>
    <property name="Caller" type="s" access="read"/>
    <property name="Started" type="b" access="read"/>
  </interface>
</node>
"""
