"""/etc/apt-ostree/apt-ostreed.conf: one file, read by apt-ostreed (`[Daemon]`) and
by the boot-time parts of health-checked boot (`[Health]`, docs/health.md).

```
[Health]
Enabled=yes|no          # the off switch of boot counting and health checks
BootAttempts=3          # boots a new deployment gets before GRUB falls back
CheckTimeoutSec=300     # the time each health check may take
```
"""

from __future__ import annotations

import configparser
from dataclasses import dataclass
from pathlib import Path

from apt_ostree.errors import AptOstreeError

CONFIG_PATH = Path("/etc/apt-ostree/apt-ostreed.conf")
# The GRUB script counts with a chain of string compares, one per state.
MAX_BOOT_ATTEMPTS = 9
BOOLEANS = {"yes": True, "true": True, "1": True, "on": True,
            "no": False, "false": False, "0": False, "off": False}  # fmt: skip


class ConfigError(AptOstreeError):
    pass


def read_conf(path: Path) -> configparser.ConfigParser:
    """The file parsed (empty when it does not exist); ConfigError names the file."""
    parser = configparser.ConfigParser(interpolation=None)
    # Keys are case-sensitive, as systemd-style files are.
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    try:
        with path.open() as f:
            parser.read_file(f)
    except FileNotFoundError:
        pass
    except (OSError, configparser.Error) as e:
        raise ConfigError(f"{path}: {e}") from e
    return parser


@dataclass(frozen=True)
class HealthSettings:
    enabled: bool = True
    boot_attempts: int = 3
    check_timeout: int = 300


def _integer(path: Path, key: str, text: str, low: int, high: int) -> int:
    try:
        value = int(text)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise ConfigError(f"{path}: {key}={text} is not a number from {low} to {high}")
    return value


def health_settings(parser: configparser.ConfigParser, path: Path) -> HealthSettings:
    section = "Health"
    enabled_text = parser.get(section, "Enabled", fallback="yes").strip().lower()
    if enabled_text not in BOOLEANS:
        raise ConfigError(f"{path}: Enabled={enabled_text} is not yes or no")
    attempts = parser.get(section, "BootAttempts", fallback="3").strip()
    timeout = parser.get(section, "CheckTimeoutSec", fallback="300").strip()
    return HealthSettings(
        enabled=BOOLEANS[enabled_text],
        boot_attempts=_integer(path, "BootAttempts", attempts, 1, MAX_BOOT_ATTEMPTS),
        check_timeout=_integer(path, "CheckTimeoutSec", timeout, 1, 86400),
    )


def load_health_settings(path: Path = CONFIG_PATH) -> HealthSettings:
    return health_settings(read_conf(path), path)
