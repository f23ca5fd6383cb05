"""Build side: treefile, bootstrap, postprocess to OSTree layout, commit, export."""
