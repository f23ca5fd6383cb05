"""/etc/apt-ostree/apt-ostreed.conf: the daemon's settings (as rpm-ostreed.conf).

```
[Daemon]
AutomaticUpdatePolicy=none|check|stage
```

`none` (default): `upgrade --trigger-automatic-update-policy` does nothing;
`check`: it fetches the new commit's metadata, which `status` then shows as
the available update; `stage`: it stages the upgrade, finalized at shutdown.
Read at start and by `apt-ostree reload`.
"""

from __future__ import annotations

import configparser
from dataclasses import dataclass
from pathlib import Path

from apt_ostree.errors import AptOstreeError

CONFIG_PATH = Path("/etc/apt-ostree/apt-ostreed.conf")
POLICIES = ("none", "check", "stage")


class ConfigError(AptOstreeError):
    pass


@dataclass(frozen=True)
class DaemonConfig:
    automatic_update_policy: str = "none"


def load_config(path: Path) -> DaemonConfig:
    """The settings in `path` (defaults when it does not exist); ConfigError names
    the file and the bad value."""
    parser = configparser.ConfigParser(interpolation=None)
    # Keys are case-sensitive, as systemd-style files are.
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    try:
        with path.open() as f:
            parser.read_file(f)
    except FileNotFoundError:
        return DaemonConfig()
    except (OSError, configparser.Error) as e:
        raise ConfigError(f"{path}: {e}") from e
    policy = parser.get("Daemon", "AutomaticUpdatePolicy", fallback="none").strip().lower()
    if policy == "off":  # rpm-ostree's older spelling
        policy = "none"
    if policy not in POLICIES:
        raise ConfigError(
            f"{path}: AutomaticUpdatePolicy={policy} is not one of {', '.join(POLICIES)}"
        )
    return DaemonConfig(automatic_update_policy=policy)
