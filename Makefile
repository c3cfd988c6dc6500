# The two set-up commands of the README: `make demo` and `make test`. Both install every
# system package and Python dependency they need first (Debian, as root).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
APT_PACKAGES := haproxy openssh-server openssh-client redis-server postgresql-client pebble \
	chromium python3-venv python3-dev iproute2 procps wrk nginx-light curl ca-certificates \
	iptables
# `make compose-test`: a container engine (podman with runc, its init, networking), Compose
# (Debian's docker-compose, speaking to podman's Docker API) and debootstrap for the base image.
COMPOSE_APT_PACKAGES := podman runc catatonit netavark aardvark-dns iptables docker-compose debootstrap
# What `make compose-test` keeps between runs: the base image's tarball, apt's downloads, wheels.
COMPOSE_CACHE := .cache/compose

.PHONY: setup system-packages compose-packages python-deps lint test test-cloud test-home \
	test-workers compose-test demo run clean

setup: system-packages python-deps

# $(call apt-install,PACKAGES): install those of PACKAGES that are missing.
define apt-install
	@missing=$$(for p in $(1); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q "ok installed" || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing: $$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi
endef

system-packages:
	$(call apt-install,$(APT_PACKAGES))
	@# Debian's openssh-server package starts the machine's own sshd; ours is separate and never touches it.

python-deps: $(BIN)/cloudathome

$(BIN)/cloudathome: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

lint: python-deps
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	DJANGO_SETTINGS_MODULE=cloud.settings CLOUDATHOME_STATE_DIR=$$(mktemp -d) $(BIN)/mypy cloud workers
	DJANGO_SETTINGS_MODULE=home.settings CLOUDATHOME_STATE_DIR=$$(mktemp -d) $(BIN)/mypy home

test-cloud: python-deps
	$(BIN)/pytest tests/cloud -p no:cacheprovider

test-home: python-deps
	$(BIN)/pytest tests/home -p no:cacheprovider

# What workers/ holds, the demo and the benchmark among it (both sites as real processes).
test-workers: python-deps
	$(BIN)/pytest tests/workers -p no:cacheprovider

# Every test: lint and types, then the suites two at a time (2 cores): the third starts when
# the first one done frees its core. Three at once saved ~0.5 min but made the load-sensitive
# edge tests flaky.
test: setup lint
	$(MAKE) -j2 --output-sync=target test-cloud test-home test-workers

# Both compose files with a real engine through the whole walkthrough (as root, several
# minutes; tests/compose/). Not part of `test`: it builds images.
compose-test: setup compose-packages $(COMPOSE_CACHE)/base-bookworm.tar
	CLOUDATHOME_COMPOSE_CACHE=$(abspath $(COMPOSE_CACHE)) $(BIN)/pytest tests/compose -p no:cacheprovider -x -v

compose-packages:
	$(call apt-install,$(COMPOSE_APT_PACKAGES))

$(COMPOSE_CACHE)/base-bookworm.tar: tests/compose/base.sh | compose-packages
	sh tests/compose/base.sh $@

# The main job: both sites, the whole walkthrough, verified (Ctrl-C stops it).
demo: setup
	$(BIN)/cloudathome demo

# The cloud site alone in the foreground (Ctrl-C stops it).
run: setup
	$(BIN)/cloudathome cloud up

# Benchmarks of both sites on this machine (as root, a few minutes): docs/performance.md.
bench: setup
	$(BIN)/cloudathome bench

clean:
	rm -rf $(VENV) build *.egg-info
