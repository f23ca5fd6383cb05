"""The treefile: schema, exact error positions, includes, input hashing."""

from __future__ import annotations

import json
import os
import shutil
import textwrap
from pathlib import Path

import pytest

from apt_ostree.compose.treefile import Treefile, load_treefile
from apt_ostree.errors import TreefileError

REF = "debian/12/x86_64/test"


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in tmp_path so that messages name files as short relative paths."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write(name: str, text: str) -> Path:
    path = Path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def load(text: str, name: str = "tf.yaml") -> Treefile:
    return load_treefile(write(name, text))


def error_of(text: str, name: str = "tf.yaml") -> str:
    with pytest.raises(TreefileError) as exc:
        load(text, name)
    return str(exc.value)


# --- values and defaults --------------------------------------------------------------


def test_minimal_treefile_gets_rpm_ostree_defaults() -> None:
    tf = load(f"ref: {REF}\n")
    assert tf.ref == REF
    assert tf.path == Path.cwd() / "tf.yaml"
    assert tf.packages == []
    assert tf.recommends is True
    assert tf.documentation is True
    assert tf.machineid_compat is True
    assert tf.tmp_is_dir is False
    assert tf.components == ["main"]
    assert tf.sources is None
    assert tf.postprocess_script is None


def test_every_key_is_read() -> None:
    write("post.sh", "#!/bin/sh\n")
    write("files/motd", "hello\n")
    tf = load(
        f"""
        ref: {REF}
        packages: [systemd, "linux-image-amd64"]
        exclude-packages: [nano]
        recommends: false
        documentation: false
        postprocess-script: post.sh
        postprocess: ["echo one", "echo two"]
        add-files: [[files/motd, /etc/motd]]
        remove-files: [/usr/share/doc/foo]
        units: [ssh.service, getty@tty1.service]
        default-target: multi-user.target
        initramfs-args: [--add-drivers=virtio_blk]
        machineid-compat: false
        tmp-is-dir: true
        metadata: {{version-name: test, build: 3, stable: true, tags: [a, b]}}
        automatic-version-prefix: "12"
        suite: bookworm
        components: [main, contrib]
        architecture: amd64
        """
    )
    assert tf.packages == ["systemd", "linux-image-amd64"]
    assert tf.exclude_packages == ["nano"]
    assert (tf.recommends, tf.documentation) == (False, False)
    assert tf.postprocess_script == Path.cwd() / "post.sh"
    assert tf.postprocess == ["echo one", "echo two"]
    assert tf.add_files == [(Path.cwd() / "files/motd", "/etc/motd")]
    assert tf.remove_files == ["/usr/share/doc/foo"]
    assert tf.units == ["ssh.service", "getty@tty1.service"]
    assert tf.default_target == "multi-user.target"
    assert tf.initramfs_args == ["--add-drivers=virtio_blk"]
    assert (tf.machineid_compat, tf.tmp_is_dir) == (False, True)
    assert tf.metadata == {"version-name": "test", "build": 3, "stable": True, "tags": ["a", "b"]}
    assert tf.automatic_version_prefix == "12"
    assert (tf.suite, tf.components, tf.architecture) == ("bookworm", ["main", "contrib"], "amd64")


def test_json_treefile_is_accepted_even_with_tab_indentation() -> None:
    data = {"ref": REF, "packages": ["bash", "vim"], "metadata": {"motto": 'say "hi"\tthen go'}}
    tf = load(json.dumps(data, indent="\t"), "tf.json")
    assert tf.ref == REF
    assert tf.packages == ["bash", "vim"]
    assert tf.metadata == {"motto": 'say "hi"\tthen go'}


def test_json_treefile_errors_name_the_line() -> None:
    message = error_of(json.dumps({"ref": REF, "recommends": "no"}, indent=2), "tf.json")
    assert message == 'tf.json:3: key "recommends": expected a boolean, got string'


def test_tree_paths_are_made_absolute() -> None:
    write("a", "")
    tf = load(f"ref: {REF}\nremove-files: [usr/share/info]\nadd-files: [[a, usr/share//a]]\n")
    assert tf.remove_files == ["/usr/share/info"]
    assert tf.add_files[0][1] == "/usr/share/a"


def test_merged_holds_effective_values_and_leaves_out_unset_ones() -> None:
    tf = load(f"ref: {REF}\npackages: [bash]\n")
    assert tf.merged["ref"] == REF
    assert tf.merged["packages"] == ["bash"]
    assert tf.merged["recommends"] is True
    assert "default-target" not in tf.merged
    assert "sources" not in tf.merged
    json.dumps(tf.merged)  # plain data


# --- errors name file, line and key ----------------------------------------------------


def test_unknown_key_names_file_line_and_a_close_match() -> None:
    message = error_of(f"ref: {REF}\n\npakages: [bash]\n")
    assert message == 'tf.yaml:3: unknown key "pakages" (did you mean "packages"?)'


def test_unknown_rpm_ostree_key_says_what_to_use_instead() -> None:
    message = error_of(f"ref: {REF}\nrepos: [fedora]\n")
    assert message == 'tf.yaml:2: unknown key "repos" (APT sources are given with "sources")'


def test_wrong_type_names_expected_and_actual_type() -> None:
    message = error_of(f'ref: {REF}\npackages: [a]\nrecommends: "yes"\n')
    assert message == 'tf.yaml:3: key "recommends": expected a boolean, got string'


def test_number_where_a_string_is_expected_suggests_quotes() -> None:
    message = error_of(f"ref: {REF}\nautomatic-version-prefix: 39\n")
    assert message == (
        'tf.yaml:2: key "automatic-version-prefix": expected a string, got integer '
        "(put it in quotes to make it a string)"
    )


def test_list_key_given_a_string_is_an_error() -> None:
    message = error_of(f"ref: {REF}\npackages: bash\n")
    assert message == 'tf.yaml:2: key "packages": expected a list, got string'


def test_missing_ref_is_an_error() -> None:
    assert error_of("packages: [bash]\n") == 'tf.yaml: missing required key "ref"'


def test_invalid_ref_names_its_line() -> None:
    message = error_of('packages: [bash]\nref: "debian 12"\n')
    assert message.startswith('tf.yaml:2: key "ref": "debian 12" is not a valid OSTree ref')


def test_yaml_syntax_error_names_its_line() -> None:
    message = error_of(f"ref: {REF}\npackages: [bash\nrecommends: true\n")
    assert message.startswith("tf.yaml:3: invalid YAML: ")


def test_duplicate_key_is_an_error() -> None:
    message = error_of(f"ref: {REF}\npackages: [a]\npackages: [b]\n")
    assert message == 'tf.yaml:3: duplicate key "packages" (first at line 2)'


def test_duplicate_key_inside_metadata_is_an_error() -> None:
    message = error_of(f"ref: {REF}\nmetadata:\n  a: 1\n  a: 2\n")
    assert message == 'tf.yaml:4: duplicate key "a" (first at line 3)'


def test_package_name_with_whitespace_is_rejected_at_its_line() -> None:
    message = error_of(f"ref: {REF}\npackages:\n  - bash\n  - vim nano\n")
    assert message == 'tf.yaml:4: key "packages": "vim nano" must not contain whitespace'


def test_empty_package_name_is_rejected() -> None:
    message = error_of(f'ref: {REF}\npackages: [bash, ""]\n')
    assert message == 'tf.yaml:2: key "packages": must not be empty'


def test_non_string_package_name_is_rejected() -> None:
    message = error_of(f"ref: {REF}\npackages:\n  - 42\n")
    assert message.startswith('tf.yaml:3: key "packages": expected a string, got integer')


def test_missing_add_files_source_is_an_error() -> None:
    message = error_of(f"ref: {REF}\nadd-files:\n  - [nothere, /usr/share/x]\n")
    assert message.startswith('tf.yaml:3: key "add-files": source "nothere" does not exist')


def test_add_files_entry_must_be_a_pair() -> None:
    write("a", "")
    message = error_of(f"ref: {REF}\nadd-files:\n  - [a, /b, /c]\n")
    assert (
        message
        == 'tf.yaml:3: key "add-files": expected a [source, destination] pair, got a list of 3'
    )


def test_add_files_destination_must_be_in_usr_or_etc() -> None:
    write("a", "")
    message = error_of(f"ref: {REF}\nadd-files:\n  - [a, /var/lib/a]\n")
    assert message.startswith(
        'tf.yaml:3: key "add-files": destination "/var/lib/a" is outside /usr and /etc'
    )


def test_missing_postprocess_script_is_an_error() -> None:
    message = error_of(f"ref: {REF}\npostprocess-script: post.sh\n")
    assert message.startswith('tf.yaml:2: key "postprocess-script": "post.sh" does not exist')


def test_remove_files_may_not_leave_the_tree() -> None:
    message = error_of(f"ref: {REF}\nremove-files: [/usr/../etc]\n")
    assert message == 'tf.yaml:2: key "remove-files": "/usr/../etc" must not contain ".."'


def test_units_must_be_unit_names() -> None:
    message = error_of(f"ref: {REF}\nunits: [ssh]\n")
    assert (
        message == 'tf.yaml:2: key "units": "ssh" is not a systemd unit name (such as ssh.service)'
    )


def test_metadata_values_may_not_be_mappings() -> None:
    message = error_of(f"ref: {REF}\nmetadata:\n  a:\n    b: c\n")
    assert message == (
        'tf.yaml:4: key "metadata": expected a string, integer, float, boolean '
        "or list of strings, got mapping"
    )


def test_excluded_package_that_is_also_requested_is_an_error() -> None:
    message = error_of(f"ref: {REF}\npackages: [nano]\nexclude-packages: [nano]\n")
    assert message == 'tf.yaml:3: key "exclude-packages": "nano" is also in "packages"'


def test_empty_treefile_is_an_error() -> None:
    assert error_of("# nothing\n") == "tf.yaml: the treefile is empty"


def test_top_level_must_be_a_mapping() -> None:
    assert error_of("- ref\n") == "tf.yaml:1: expected a mapping of keys at the top, got list"


def test_missing_treefile_is_an_error() -> None:
    with pytest.raises(TreefileError, match=r"^nothere.yaml: no such treefile$"):
        load_treefile(Path("nothere.yaml"))


# --- include ---------------------------------------------------------------------------


def test_include_lists_concatenate_included_first_without_duplicate_packages() -> None:
    write("base.yaml", f"ref: {REF}\npackages: [systemd, bash]\npostprocess: [base]\n")
    tf = load("include: base.yaml\npackages: [vim, bash]\npostprocess: [mine]\n")
    assert tf.packages == ["systemd", "bash", "vim"]
    assert tf.postprocess == ["base", "mine"]


def test_include_scalars_are_overridden_by_the_including_file() -> None:
    write("base.yaml", f"ref: {REF}\nrecommends: false\nsuite: bookworm\n")
    tf = load("include: base.yaml\nref: debian/12/x86_64/derived\nsuite: trixie\n")
    assert tf.ref == "debian/12/x86_64/derived"
    assert tf.suite == "trixie"
    assert tf.recommends is False


def test_include_metadata_merges_with_the_including_file_winning() -> None:
    write("base.yaml", f"ref: {REF}\nmetadata: {{a: base, b: base}}\n")
    tf = load("include: base.yaml\nmetadata: {b: mine, c: mine}\n")
    assert tf.metadata == {"a": "base", "b": "mine", "c": "mine"}


def test_ref_may_come_from_an_included_file() -> None:
    write("base.yaml", f"ref: {REF}\n")
    assert load("include: [base.yaml]\npackages: [bash]\n").ref == REF


def test_several_includes_merge_in_order() -> None:
    write("one.yaml", f"ref: {REF}\npackages: [a]\nsuite: one\n")
    write("two.yaml", "packages: [b]\nsuite: two\n")
    tf = load("include: [one.yaml, two.yaml]\npackages: [c]\n")
    assert tf.packages == ["a", "b", "c"]
    assert tf.suite == "two"


def test_include_cycle_is_an_error() -> None:
    write("a.yaml", "include: b.yaml\n")
    write("b.yaml", f"ref: {REF}\ninclude: tf.yaml\n")
    message = error_of("include: a.yaml\n")
    assert (
        message == 'b.yaml:2: key "include": include cycle: tf.yaml -> a.yaml -> b.yaml -> tf.yaml'
    )


def test_file_included_twice_is_an_error() -> None:
    write("common.yaml", "packages: [bash]\n")
    write("a.yaml", f"ref: {REF}\ninclude: common.yaml\n")
    message = error_of("include: [a.yaml, common.yaml]\n")
    assert message == 'tf.yaml:1: key "include": "common.yaml" is already included at a.yaml:2'


def test_missing_include_is_an_error() -> None:
    message = error_of(f"ref: {REF}\ninclude: nothere.yaml\n")
    assert message.startswith('tf.yaml:2: key "include": "nothere.yaml" does not exist')


def test_error_in_included_file_names_that_file() -> None:
    write("parts/base.yaml", f"ref: {REF}\nrecommends: maybe\n")
    message = error_of("include: parts/base.yaml\n")
    assert message == 'parts/base.yaml:2: key "recommends": expected a boolean, got string'


def test_relative_paths_are_relative_to_the_file_that_names_them() -> None:
    write("parts/post.sh", "#!/bin/sh\n")
    write("parts/files/motd", "hi\n")
    write("files/issue", "hi\n")
    write(
        "parts/base.yaml",
        f"ref: {REF}\npostprocess-script: post.sh\nadd-files: [[files/motd, /etc/motd]]\n",
    )
    tf = load("include: parts/base.yaml\nadd-files: [[files/issue, /etc/issue]]\n")
    assert tf.postprocess_script == Path.cwd() / "parts/post.sh"
    assert tf.add_files == [
        (Path.cwd() / "parts/files/motd", "/etc/motd"),
        (Path.cwd() / "files/issue", "/etc/issue"),
    ]


# --- sources ---------------------------------------------------------------------------


def test_sources_are_converted_with_the_treefile_suite_and_components() -> None:
    tf = load(
        f"""
        ref: {REF}
        suite: bookworm
        components: [main, contrib]
        sources:
          - deb http://127.0.0.1:8080/debian
        """
    )
    assert tf.sources == [
        "Types: deb\nURIs: http://127.0.0.1:8080/debian\nSuites: bookworm\nComponents: main contrib"
    ]
    assert tf.merged["sources"] == tf.sources


def test_source_error_names_file_line_and_key() -> None:
    message = error_of(
        f"""
        ref: {REF}
        suite: bookworm
        sources:
          - deb http://127.0.0.1:8080/debian
          - uris: file:///srv/repo
            signed-by: keys/missing.asc
        """
    )
    assert message.startswith(
        'tf.yaml:5: key "sources": key file "keys/missing.asc" named in Signed-By does not exist'
    )


def test_source_without_any_suite_is_an_error() -> None:
    message = error_of(f"ref: {REF}\nsources: [deb file:///srv/repo]\n")
    assert message.startswith('tf.yaml:2: key "sources": file:///srv/repo: no suite')


# --- hashes ----------------------------------------------------------------------------


def _tree_with_inputs() -> Path:
    write("post.sh", "#!/bin/sh\necho hi\n")
    write("files/motd", "hello\n")
    write("overlay/etc/issue", "Debian\n")
    write("keys/repo.asc", "KEY\n")
    return write(
        "tf.yaml",
        f"""
        ref: {REF}
        suite: bookworm
        postprocess-script: post.sh
        add-files:
          - [files/motd, /etc/motd]
          - [overlay, /usr/share/overlay]
        sources:
          - deb [signed-by=keys/repo.asc] file:///srv/repo
        """,
    )


def test_inputs_sha256_is_stable_across_loads_and_mtime_changes() -> None:
    path = _tree_with_inputs()
    first = load_treefile(path).inputs_sha256()
    os.utime("files/motd", (1, 1))
    assert load_treefile(path).inputs_sha256() == first


def test_inputs_sha256_changes_when_an_add_files_source_changes() -> None:
    path = _tree_with_inputs()
    before = load_treefile(path).inputs_sha256()
    Path("files/motd").write_text("changed\n")
    assert load_treefile(path).inputs_sha256() != before


def test_inputs_sha256_changes_when_a_file_inside_an_add_files_directory_changes() -> None:
    path = _tree_with_inputs()
    before = load_treefile(path).inputs_sha256()
    Path("overlay/etc/issue").write_text("changed\n")
    assert load_treefile(path).inputs_sha256() != before


def test_inputs_sha256_changes_when_the_postprocess_script_changes() -> None:
    path = _tree_with_inputs()
    before = load_treefile(path).inputs_sha256()
    Path("post.sh").write_text("#!/bin/sh\necho other\n")
    assert load_treefile(path).inputs_sha256() != before


def test_inputs_sha256_changes_when_a_source_key_file_changes() -> None:
    path = _tree_with_inputs()
    before = load_treefile(path).inputs_sha256()
    Path("keys/repo.asc").write_text("OTHER KEY\n")
    assert load_treefile(path).inputs_sha256() != before


def test_treefile_sha256_depends_on_the_merged_treefile_only() -> None:
    path = _tree_with_inputs()
    before = load_treefile(path)
    Path("files/motd").write_text("changed\n")
    assert load_treefile(path).treefile_sha256() == before.treefile_sha256()
    write("tf2.yaml", "include: tf.yaml\npackages: [vim]\n")
    assert load_treefile(Path("tf2.yaml")).treefile_sha256() != before.treefile_sha256()


def test_hashes_do_not_depend_on_where_the_treefile_and_its_inputs_lie(tmp_path: Path) -> None:
    path = _tree_with_inputs()
    before = load_treefile(path)
    moved = tmp_path / "elsewhere"
    shutil.copytree(Path.cwd(), moved)
    after = load_treefile(moved / path.name)
    assert after.treefile_sha256() == before.treefile_sha256()
    assert after.inputs_sha256() == before.inputs_sha256()


# --- local-packages ----------------------------------------------------------------------


def test_local_packages_globs_expand_relative_to_the_treefile_sorted() -> None:
    write("debs/b_1.0_all.deb", "b")
    write("debs/a_1.0_all.deb", "a")
    write("sub/tf.yaml", f"ref: {REF}\nlocal-packages: ['../debs/*_all.deb']\n")
    tf = load_treefile(Path("sub/tf.yaml"))
    assert tf.local_packages == [
        Path.cwd() / "debs/a_1.0_all.deb",
        Path.cwd() / "debs/b_1.0_all.deb",
    ]
    assert tf.merged["local-packages"] == [str(p) for p in tf.local_packages]


def test_local_packages_is_left_out_of_merged_when_absent() -> None:
    assert "local-packages" not in load(f"ref: {REF}\n").merged


def test_local_packages_glob_that_matches_nothing_is_an_error() -> None:
    message = error_of(f"ref: {REF}\nlocal-packages:\n  - build/deb/apt-ostree_*_all.deb\n")
    assert message.startswith('tf.yaml:3: key "local-packages": ')
    assert '"build/deb/apt-ostree_*_all.deb" matches no file' in message


def test_local_packages_entry_must_be_a_deb_file() -> None:
    write("notes.txt", "x")
    message = error_of(f"ref: {REF}\nlocal-packages: [notes.txt]\n")
    assert 'key "local-packages"' in message
    assert "is not a .deb file" in message


def test_inputs_sha256_changes_when_a_local_package_changes() -> None:
    write("debs/a_1.0_all.deb", "a")
    path = write("tf.yaml", f"ref: {REF}\nlocal-packages: [debs/a_1.0_all.deb]\n")
    before = load_treefile(path)
    treefile_before, inputs_before = before.treefile_sha256(), before.inputs_sha256()
    Path("debs/a_1.0_all.deb").write_text("rebuilt")
    after = load_treefile(path)
    assert after.treefile_sha256() == treefile_before
    assert after.inputs_sha256() != inputs_before
