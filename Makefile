# apt-ostree: `make compose` builds the example tree, `make check` runs every test.
# Both install what they need first (Debian packages and a venv); idempotent.

PYTHON := /usr/bin/python3
VENV ?= .venv
BIN := $(VENV)/bin
REPO ?= build/repo
CACHEDIR ?= build/cache
TREEFILE ?= examples/debian-13.yaml
PYTEST_ARGS ?=

# Everything apt-ostree and its tests use at run time comes from Debian.
APT_PACKAGES := \
	python3 python3-venv python3-setuptools python3-gi gir1.2-ostree-1.0 python3-apt python3-yaml \
	python3-dasbus python3-pytest python3-seccomp ostree mmdebstrap dracut-core bubblewrap \
	gnupg dpkg-dev apt-utils e2fsprogs xfsprogs \
	fdisk grub-pc-bin grub-efi-amd64-bin dosfstools mtools grub-emu qemu-utils qemu-system-x86 ovmf \
	python3-pexpect dbus polkitd skopeo umoci docker-registry podman \
	cockpit-ws cockpit-bridge cockpit-system chromium chromium-driver python3-selenium
# What `make deb` needs besides APT_PACKAGES.
DEB_BUILD_PACKAGES := build-essential debhelper dh-python pybuild-plugin-pyproject python3-all lintian
PIP_PACKAGES := ruff==0.17.6 mypy==2.4.1 types-PyYAML

.PHONY: deps compose deb check lint lintian test clean

deps: $(VENV)/.stamp

$(VENV)/.stamp: Makefile pyproject.toml
	@missing=$$(for p in $(APT_PACKAGES); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; \
	done); \
	if [ -n "$$missing" ]; then \
		echo "Installing Debian packages:" $$missing; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi
	$(PYTHON) -m venv --system-site-packages $(VENV)
	$(BIN)/pip install -q $(PIP_PACKAGES)
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .
	touch $@

compose: deps deb
	mkdir -p build
	$(BIN)/apt-ostree compose tree $(TREEFILE) --repo $(REPO) --cachedir $(CACHEDIR) \
		--write-commitid-to build/commitid
	@echo; ostree --repo=$(REPO) log $$(cat build/commitid) | head -n 8
	@echo "Top level of the commit:"; ostree --repo=$(REPO) ls $$(cat build/commitid) /
	@echo "Kernel and initramfs:"; ostree --repo=$(REPO) ls -R $$(cat build/commitid) /usr/lib/modules | grep -E 'vmlinuz|initramfs' || true

# apt-ostree's own .deb, built from a copy of the tree so that the checkout
# stays clean: $(DEB_OUT)/apt-ostree_<version>_all.deb. The copy lies in a
# temporary directory because pybuild cannot build under a path with spaces.
# PATH is Debian's alone, so that pybuild finds /usr/bin/python3 and its
# modules, not another python3.
DEB_VERSION = $(shell dpkg-parsechangelog -S Version)
DEB_OUT ?= build/deb
DEB_FILE = $(DEB_OUT)/apt-ostree_$(DEB_VERSION)_all.deb
COCKPIT_DEB_FILE = $(DEB_OUT)/apt-ostree-cockpit_$(DEB_VERSION)_all.deb

deb: deps
	@missing=$$(for p in $(DEB_BUILD_PACKAGES); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; \
	done); \
	if [ -n "$$missing" ]; then \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi
	mkdir -p "$(DEB_OUT)"
	rm -f "$(DEB_OUT)"/apt-ostree_* "$(DEB_OUT)"/apt-ostree-cockpit_*
	set -e; work=$$(mktemp -d /tmp/apt-ostree-deb.XXXXXX); trap 'rm -rf "$$work"' EXIT; \
	mkdir "$$work/src"; \
	tar -c --exclude-vcs --exclude=./build --exclude=./$(VENV) --exclude=__pycache__ \
		--exclude='*.egg-info' --exclude=./.pybuild . | tar -x -C "$$work/src"; \
	(cd "$$work/src" && env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME="$$HOME" \
		dpkg-buildpackage -us -uc -b --no-sign); \
	cp "$$work"/apt-ostree_$(DEB_VERSION)_all.deb "$$work"/apt-ostree-cockpit_$(DEB_VERSION)_all.deb "$(DEB_OUT)/"
	@echo; dpkg-deb -I "$(DEB_FILE)" | sed -n '/Package:/,/Description:/p'
	@echo "Built $(DEB_FILE) $(COCKPIT_DEB_FILE)"

lint: deps
	$(BIN)/ruff check src tests $(wildcard bench/*)
	$(BIN)/ruff format --check src tests $(wildcard bench/*)
	$(BIN)/mypy

# The package must be lintian-clean: errors and warnings fail (overrides in
# debian/apt-ostree.lintian-overrides say why each one is there).
lintian: deb
	lintian --fail-on error,warning "$(DEB_FILE)" "$(COCKPIT_DEB_FILE)"

# The whole suite, with the boot tests of SIDE_MACHINE in a second pytest run
# beside it: each VM is one emulated CPU, so two machines boot side by side on
# two cores (docs/development.md). Given test paths in PYTEST_ARGS, one run.
SIDE_MACHINE ?= trixie-uefi
MAIN_MACHINES ?= bookworm-bios
# The .deb is built once, before both runs (they compose it into the examples).
test: deps deb
	@mkdir -p build; export APT_OSTREE_TEST_DEB_BUILT=1; \
	if echo " $(PYTEST_ARGS)" | grep -q " tests/"; then \
		exec $(BIN)/python -m pytest $(PYTEST_ARGS); \
	fi; \
	APT_OSTREE_TEST_MACHINES="$(SIDE_MACHINE)" $(BIN)/python -m pytest tests/e2e/test_boot.py \
		$(PYTEST_ARGS) > build/test-$(SIDE_MACHINE).log 2>&1 & side=$$!; \
	APT_OSTREE_TEST_MACHINES="$(MAIN_MACHINES)" $(BIN)/python -m pytest $(PYTEST_ARGS); main=$$?; \
	wait $$side; side_rc=$$?; \
	echo "== the boot tests of $(SIDE_MACHINE), run beside the suite (exit $$side_rc) =="; \
	cat build/test-$(SIDE_MACHINE).log; \
	test $$main -eq 0 && test $$side_rc -eq 0

check: lint lintian test

clean:
	rm -rf build $(VENV)
