"""`compose image`: treefile in, OCI image out (compose tree + container-encapsulate).

The OSTree repo lives in the cache directory. An existing OUTPUT is the previous
build: its layer split is kept, and when it already holds the composed commit
nothing is written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from apt_ostree.compose.encapsulate import EncapsulateRequest, encapsulate, read_manifest
from apt_ostree.compose.tree import DEFAULT_CACHEDIR, ComposeOptions, compose_tree
from apt_ostree.compose.treefile import load_treefile
from apt_ostree.errors import AptOstreeError
from apt_ostree.oci import OSTREE_COMMIT_LABEL
from apt_ostree.oci.imgref import parse_image_reference
from apt_ostree.oci.layout import OciError
from apt_ostree.ostree import repo as ostree_repo
from apt_ostree.reporter import Reporter

TRANSPORT_OF_FORMAT = {"ociarchive": "oci-archive:", "oci": "oci:", "registry": "docker://"}


@dataclass
class ImageRequest:
    treefile: Path
    output: str
    format: str = "ociarchive"
    cachedir: Path | None = None
    repo: Path | None = None  # default CACHEDIR/repo
    initialize: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    image_config: Path | None = None
    max_layers: int = 64
    format_version: int = 1
    authfile: Path | None = None


@dataclass
class ImageResult:
    commit: str
    digest: str | None  # None: OUTPUT already held this commit


def _previous_manifest(imgref: str, req: ImageRequest) -> Any | None:
    """OUTPUT's manifest, None when OUTPUT does not exist yet."""
    ref = parse_image_reference(imgref)
    if ref.transport == "oci" and not (ref.path / "index.json").exists():
        return None
    if ref.transport == "oci-archive" and not ref.path.exists():
        return None
    try:
        return read_manifest(imgref, req.authfile)
    except OciError:
        if req.format == "registry":
            return None  # not pushed yet (or unreachable: the push will tell)
        raise


def compose_image(req: ImageRequest, reporter: Reporter) -> ImageResult:
    if req.format not in TRANSPORT_OF_FORMAT:
        raise AptOstreeError(f"unknown --format {req.format!r}")
    imgref = TRANSPORT_OF_FORMAT[req.format] + req.output
    treefile = load_treefile(req.treefile)
    previous = _previous_manifest(imgref, req)
    if previous is None and not req.initialize:
        raise AptOstreeError(f"{req.output} does not exist: pass --initialize to create it")
    cachedir = req.cachedir or DEFAULT_CACHEDIR
    repo = req.repo or cachedir / "repo"
    compose_tree(treefile, ComposeOptions(repo=repo, cachedir=cachedir), reporter)
    commit = ostree_repo.resolve_ref(ostree_repo.open_repo(repo), treefile.ref)
    if commit is None:
        raise AptOstreeError(f"the compose left no commit on {treefile.ref}")
    labels = (previous or {}).get("annotations") or {}
    if labels.get(OSTREE_COMMIT_LABEL) == commit:
        return ImageResult(commit, None)
    result = encapsulate(
        EncapsulateRequest(
            repo=repo,
            ref=commit,
            imgref=imgref,
            labels=req.labels,
            image_config=req.image_config,
            max_layers=req.max_layers,
            format_version=req.format_version,
            previous_build_manifest=imgref if previous is not None else None,
            authfile=req.authfile,
        ),
        reporter,
    )
    return ImageResult(commit, result.digest)
