"""What the CLI uses to reach the system engine.

Today every call runs in-process (as root): on an offline sysroot that is the
design; on a booted system the daemon will take these calls over D-Bus.
"""
