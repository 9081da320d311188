# Set-up and entry points. `make run` is the main job, `make test` runs every test.
# Both install what a fresh Debian 12 machine lacks first (idempotent, fast when done).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# Debian packages the pipeline uses (see `invoke doctor` for what each is for).
APT_PACKAGES := linux-source-6.1 linux-source-6.12 build-essential bc bison flex libelf-dev \
	libssl-dev dwarves cpio kmod rsync ccache xz-utils perl openssl python3-venv \
	rpm dpkg-dev lintian rpmlint shellcheck grub-common \
	qemu-system-x86 qemu-system-arm kexec-tools makedumpfile busybox-static e2fsprogs \
	mmdebstrap crash gcc-aarch64-linux-gnu distcc gcc-11

.PHONY: setup multiarch apt venv capture-debs run test unit integration e2e bench clean

setup: multiarch apt venv

# arm64 in dpkg's architectures, so that `apt-get download PKG:arm64` works (issue 14).
multiarch:
	@dpkg --print-foreign-architectures | grep -qx arm64 || { \
		echo "dpkg: adding architecture arm64"; \
		$(SUDO) dpkg --add-architecture arm64 && $(SUDO) apt-get update -qq; }

apt:
	@missing=$$(for p in $(APT_PACKAGES); do \
		[ "$$(dpkg-query -W -f='$${db:Status-Status}' $$p 2>/dev/null)" = installed ] || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "apt: installing" $$missing; \
		echo "kexec-tools kexec-tools/load_kexec boolean false" | $(SUDO) debconf-set-selections; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

# The arm64 crash test's capture initramfs is made of Debian's arm64 packages (issue 14):
# download them once into the cache (apt-get download PKG:arm64; offline, the stage says so).
setup: capture-debs
capture-debs: multiarch venv
	@$(BIN)/python -m kbuild.crashtest.debs arm64

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

# The main job on the built-in default: Debian's linux-source-6.1, minimal profile.
run: setup
	$(BIN)/invoke build-kernel package

test: setup
	$(BIN)/python -m pytest tests

unit: setup
	$(BIN)/python -m pytest tests/unit

integration: setup
	$(BIN)/python -m pytest tests/integration

e2e: setup
	$(BIN)/python -m pytest tests/e2e

# bench/build takes six full kernel builds (~25 min), bench/cross_build two (~15 min), bench/distcc two
# (~8 min, root); run them on their own.
bench: setup
	$(BIN)/python bench/configure
	$(BIN)/python bench/crash_test
	$(BIN)/python bench/crash_test --arch arm64
	$(BIN)/python bench/install_test
	$(BIN)/python bench/build
	$(BIN)/python bench/cross_build

clean:
	rm -rf build dist
