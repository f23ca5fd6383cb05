"""OCI images in ostree-ext's encapsulation format (docs/oci.md).

Shared by the build side (compose: export) and the host side (system: import):
the names of the labels and annotations, the OCI layout on disk, image
references and skopeo.
"""

# Labels (in the image config) and manifest annotations: the same set in both.
OSTREE_COMMIT_LABEL = "ostree.commit"
# sha256 of the uncompressed tar of the last layer that belongs to the commit;
# layers after it are derived (podman build ... FROM this image).
FINAL_DIFFID_LABEL = "ostree.final-diffid"
BOOTC_LABEL = "containers.bootc"
BOOTABLE_LABEL = "ostree.bootable"
LINUX_LABEL = "ostree.linux"
VERSION_LABEL = "org.opencontainers.image.version"
# Annotation of each layer after layer 0: the packages whose files it holds.
COMPONENTS_ANNOTATION = "ostree.components"
COMPONENT_SEPARATOR = ","

MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"
CONFIG_MEDIA_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"
