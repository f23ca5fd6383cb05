"""apt-ostreed: the D-Bus daemon through which tools drive apt-ostree (docs/dbus.md).

Each mutating method makes a transaction that calls the same `apt_ostree.system`
functions as the CLI, under the same sysroot lock, with a reporter that turns
progress into D-Bus signals.
"""
