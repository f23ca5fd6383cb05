"""The origin of a deployment: the only record of intent (as rpm-ostree's).

[origin]
refspec=remote:ref            (baserefspec= when packages are layered)
custom-url=URL                (rebase --custom-origin-url, with custom-description=)
container-image-reference=ostree-unverified-registry:IMAGE   (instead, for an image)
[packages]
requested=a;b;
[overrides]
remove=c;
replace=d;e=1.2-3;            (override replace NAME[=VERSION] from the APT sources)
[rpmostree]
regenerate-initramfs=true     (`initramfs --enable`, rpm-ostree's keys and group)
initramfs-args=--add-drivers;x;
initramfs-etc=/etc/a.conf;    (`initramfs-etc --track`)
[apt-ostree]
...
"""

from __future__ import annotations

from dataclasses import dataclass, field

from apt_ostree.errors import AptOstreeError
from apt_ostree.oci.ostreeref import ImageReference, is_image_reference, parse_image_reference

IMAGE_KEY = "container-image-reference"

# rpm-ostree's group for client-side state, kept so that origins read the same.
RPMOSTREE = "rpmostree"


class OriginError(AptOstreeError):
    pass


def parse_refspec(refspec: str) -> tuple[str | None, str]:
    """`remote:ref` or `ref` -> (remote or None, ref)."""
    remote, sep, ref = refspec.partition(":")
    if not sep:
        return None, refspec
    if not remote or not ref:
        raise OriginError(f'invalid refspec "{refspec}": expected REMOTE:REF or REF')
    return remote, ref


def _split_list(value: str) -> list[str]:
    return [v for v in value.split(";") if v]


@dataclass
class Origin:
    """A deployment's origin file: what it follows and the changes layered on it."""

    refspec: str
    requested_packages: list[str] = field(default_factory=list)
    requested_local: list[str] = field(default_factory=list)
    removed_base: list[str] = field(default_factory=list)
    replaced_local: list[str] = field(default_factory=list)
    # NAME or NAME=VERSION: base packages replaced from the machine's APT sources.
    replaced_remote: list[str] = field(default_factory=list)
    # The commit the deployment was made from when not the ref's tip (deploy REV).
    override_commit: str | None = None
    # (URL, description) from `rebase --custom-origin-url/--custom-origin-description`:
    # where the ref really comes from, for status only (rpm-ostree's custom-origin).
    custom_origin: tuple[str, str] | None = None
    # `initramfs --enable --arg`: the initramfs is built on the machine with these
    # dracut arguments (system/initramfs.py).
    regenerate_initramfs: bool = False
    initramfs_args: list[str] = field(default_factory=list)
    # `initramfs-etc --track`: files of /etc overlaid into the initramfs.
    initramfs_etc: list[str] = field(default_factory=list)
    extra: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def image(self) -> ImageReference | None:
        """The container image this deployment follows, or None for a ref."""
        return parse_image_reference(self.refspec) if is_image_reference(self.refspec) else None

    @property
    def remote(self) -> str | None:
        if is_image_reference(self.refspec):
            return None
        return parse_refspec(self.refspec)[0]

    @property
    def ref(self) -> str:
        return parse_refspec(self.refspec)[1]

    @property
    def layered(self) -> bool:
        return bool(
            self.requested_packages or self.requested_local or self.removed_base
            or self.replaced_local or self.replaced_remote
        )  # fmt: skip

    @classmethod
    def from_dict(cls, sections: dict[str, dict[str, str]]) -> Origin:
        o = sections.get("origin", {})
        refspec = o.get(IMAGE_KEY) or o.get("baserefspec") or o.get("refspec")
        if not refspec:
            raise OriginError("the deployment's origin has no refspec")
        packages = sections.get("packages", {})
        rpmostree = sections.get(RPMOSTREE, {})
        overrides = sections.get("overrides", {})
        known = {
            ("origin", "refspec"), ("origin", "baserefspec"), ("origin", "override-commit"),
            ("origin", "custom-url"), ("origin", "custom-description"),
            ("origin", IMAGE_KEY),
            ("packages", "requested"), ("packages", "requested-local"),
            ("overrides", "remove"), ("overrides", "replace-local"),
            ("overrides", "replace"),
            (RPMOSTREE, "regenerate-initramfs"), (RPMOSTREE, "initramfs-args"),
            (RPMOSTREE, "initramfs-etc"),
        }  # fmt: skip
        extra: dict[str, dict[str, str]] = {}
        for group, values in sections.items():
            for key, value in values.items():
                if (group, key) not in known:
                    extra.setdefault(group, {})[key] = value
        return cls(
            refspec=refspec,
            requested_packages=_split_list(packages.get("requested", "")),
            requested_local=_split_list(packages.get("requested-local", "")),
            removed_base=_split_list(overrides.get("remove", "")),
            replaced_local=_split_list(overrides.get("replace-local", "")),
            replaced_remote=_split_list(overrides.get("replace", "")),
            override_commit=o.get("override-commit") or None,
            custom_origin=(
                (o["custom-url"], o.get("custom-description", "")) if o.get("custom-url") else None
            ),
            regenerate_initramfs=rpmostree.get("regenerate-initramfs") == "true",
            initramfs_args=_split_list(rpmostree.get("initramfs-args", "")),
            initramfs_etc=_split_list(rpmostree.get("initramfs-etc", "")),
            extra=extra,
        )

    def to_dict(self) -> dict[str, dict[str, str]]:
        sections: dict[str, dict[str, str]] = {}
        key = "baserefspec" if self.layered else "refspec"
        if is_image_reference(self.refspec):
            key = IMAGE_KEY
        sections["origin"] = {key: self.refspec}
        if self.override_commit:
            sections["origin"]["override-commit"] = self.override_commit
        if self.custom_origin:
            sections["origin"]["custom-url"] = self.custom_origin[0]
            sections["origin"]["custom-description"] = self.custom_origin[1]
        if self.requested_packages or self.requested_local:
            sections["packages"] = {}
            if self.requested_packages:
                sections["packages"]["requested"] = ";".join(self.requested_packages) + ";"
            if self.requested_local:
                sections["packages"]["requested-local"] = ";".join(self.requested_local) + ";"
        overrides = {
            "remove": self.removed_base,
            "replace-local": self.replaced_local,
            "replace": self.replaced_remote,
        }
        if any(overrides.values()):
            sections["overrides"] = {
                key: ";".join(values) + ";" for key, values in overrides.items() if values
            }
        initramfs: dict[str, str] = {}
        if self.regenerate_initramfs:
            initramfs["regenerate-initramfs"] = "true"
            if self.initramfs_args:
                initramfs["initramfs-args"] = ";".join(self.initramfs_args) + ";"
        if self.initramfs_etc:
            initramfs["initramfs-etc"] = ";".join(self.initramfs_etc) + ";"
        if initramfs:
            sections[RPMOSTREE] = initramfs
        for group, values in self.extra.items():
            sections.setdefault(group, {}).update(values)
        return sections
