#!/bin/sh
# install-test-deps.sh: make sure the binaries the integration tests drive are present.
#
#   redis-server  (package redis-server)  real Redis for the cache conformance and fleet tests
#   containerd    (package containerd)    private daemon started by internal/containerdtest
#   ctr           (package containerd)    the client that pulls through Portcullis
#
# Idempotent: installs only what is missing, with apt-get, when run as root. Otherwise, or when apt is
# unavailable or fails, it says what is missing and exits 0: the tests that need a missing binary skip
# (set PORTCULLIS_REQUIRE_CONTAINERD=1 to make the containerd tests fail instead).
# Set PORTCULLIS_SKIP_INSTALL=1 to only report. Note that on a host with systemd the Debian packages
# enable and start their system services (containerd, redis-server); the tests never use those.
set -u

say() { printf 'install-test-deps: %s\n' "$*"; }

missing_pkgs=""
missing_bins=""
need() { # need BINARY PACKAGE
	if ! command -v "$1" >/dev/null 2>&1; then
		missing_bins="$missing_bins $1"
		case " $missing_pkgs " in
		*" $2 "*) ;;
		*) missing_pkgs="$missing_pkgs $2" ;;
		esac
	fi
}
need redis-server redis-server
need containerd containerd
need ctr containerd

if [ -z "$missing_pkgs" ]; then
	say "all present (redis-server, containerd, ctr)"
	exit 0
fi
say "missing:$missing_bins"

if [ "${PORTCULLIS_SKIP_INSTALL:-}" = "1" ]; then
	say "PORTCULLIS_SKIP_INSTALL=1: not installing; tests needing them will skip"
	exit 0
fi
if [ "$(id -u)" != "0" ]; then
	say "not root: not installing; run: sudo apt-get install -y$missing_pkgs (tests needing them will skip)"
	exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
	say "apt-get unavailable: install$missing_pkgs yourself (tests needing them will skip)"
	exit 0
fi

export DEBIAN_FRONTEND=noninteractive
apt_opts="-q -y -o Dpkg::Use-Pty=0 -o DPkg::Lock::Timeout=120"
say "installing:$missing_pkgs"
# shellcheck disable=SC2086 # word splitting of the option and package lists is intended
if ! apt-get $apt_opts install --no-install-recommends $missing_pkgs >/dev/null 2>&1; then
	# Most often an empty or stale package index: refresh it once and try again.
	if ! apt-get -q -o DPkg::Lock::Timeout=120 update >/dev/null 2>&1; then
		say "apt-get update failed: could not install$missing_pkgs (tests needing them will skip)"
		exit 0
	fi
	# shellcheck disable=SC2086
	if ! apt-get $apt_opts install --no-install-recommends $missing_pkgs >/dev/null 2>&1; then
		say "apt-get install$missing_pkgs failed (tests needing them will skip)"
		exit 0
	fi
fi
say "installed:$missing_pkgs"
exit 0
