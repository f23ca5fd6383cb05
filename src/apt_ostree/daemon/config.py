"""/etc/apt-ostree/apt-ostreed.conf: the daemon's settings (as rpm-ostreed.conf).

```
[Daemon]
AutomaticUpdatePolicy=none|check|stage
```

`none` (default): `upgrade --trigger-automatic-update-policy` does nothing;
`check`: it fetches the new commit's metadata, which `status` then shows as
the available update; `stage`: it stages the upgrade, finalized at shutdown.
The `[Health]` section (health-checked boot, docs/health.md) is read at boot
by apt-ostree's units and validated here too. Read at start and by
`apt-ostree reload`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from apt_ostree.settings import CONFIG_PATH, ConfigError, HealthSettings, health_settings, read_conf

__all__ = ["CONFIG_PATH", "ConfigError", "DaemonConfig", "load_config"]
POLICIES = ("none", "check", "stage")


@dataclass(frozen=True)
class DaemonConfig:
    automatic_update_policy: str = "none"
    health: HealthSettings = field(default_factory=HealthSettings)


def load_config(path: Path) -> DaemonConfig:
    """The settings in `path` (defaults when it does not exist); ConfigError names
    the file and the bad value."""
    parser = read_conf(path)
    policy = parser.get("Daemon", "AutomaticUpdatePolicy", fallback="none").strip().lower()
    if policy == "off":  # rpm-ostree's older spelling
        policy = "none"
    if policy not in POLICIES:
        raise ConfigError(
            f"{path}: AutomaticUpdatePolicy={policy} is not one of {', '.join(POLICIES)}"
        )
    return DaemonConfig(automatic_update_policy=policy, health=health_settings(parser, path))
