"""The D-Bus API of apt-ostreed: names, object paths, errors and introspection XML.

Shared by the daemon and by `apt_ostree.client.dbus`; docs/dbus.md documents it.
"""

from __future__ import annotations

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


INTROSPECTION = f"""
<node>
  <interface name="{SYSROOT_INTERFACE}">
    <method name="GetStatus">
      <arg type="s" name="status" direction="out"/>
    </method>
    <property name="Booted" type="b" access="read"/>
    <property name="Path" type="s" access="read"/>
    <property name="ActiveTransaction" type="o" access="read"/>
  </interface>
  <interface name="{OS_INTERFACE}">
    <method name="Upgrade">
      <arg type="a{{sv}}" name="options" direction="in"/>
      <arg type="o" name="transaction" direction="out"/>
    </method>
    <method name="Rollback">
      <arg type="a{{sv}}" name="options" direction="in"/>
      <arg type="o" name="transaction" direction="out"/>
    </method>
    <method name="KernelArgs">
      <arg type="as" name="append" direction="in"/>
      <arg type="as" name="delete" direction="in"/>
      <arg type="a{{sv}}" name="options" direction="in"/>
      <arg type="o" name="transaction" direction="out"/>
    </method>
    <method name="PkgChange">
      <arg type="as" name="install" direction="in"/>
      <arg type="as" name="uninstall" direction="in"/>
      <arg type="a{{sv}}" name="options" direction="in"/>
      <arg type="o" name="transaction" direction="out"/>
    </method>
    <method name="Cleanup">
      <arg type="as" name="what" direction="in"/>
      <arg type="o" name="transaction" direction="out"/>
    </method>
    <property name="Name" type="s" access="read"/>
  </interface>
  <interface name="{TRANSACTION_INTERFACE}">
    <method name="Start"/>
    <method name="Cancel"/>
    <signal name="Message">
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
