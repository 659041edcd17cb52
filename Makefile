# Two entry points (see README): `make run` and `make test`. Each installs
# what it needs first; re-running is cheap when everything is in place.

VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
STAMP  := $(VENV)/.installed
APT_PACKAGES := ffmpeg chromium redis-server

.PHONY: run test deps system-deps npm-deps dist bench bench-compare bench-chatp99 fuzz soak netlab clean

run: deps npm-deps
	$(VENV)/bin/twistd -n --pidfile= wcs

test: deps system-deps npm-deps
	$(PY) -m pytest $(PYTEST_ARGS)

deps: $(STAMP)

$(STAMP): setup.cfg setup.py pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[test]'
	touch $(STAMP)

# Debian packages the tests drive (ffmpeg as RTMP client, Chromium for the
# browser tests, iptables and iproute2 for the network lab in tests/netlab,
# coturn for the TURN test in tests/web/test_turn.py, redis-server for the
# cluster tests in tests/cluster).
# Installed only when missing; needs root, as on CI.
system-deps:
	@missing=""; \
	command -v ffmpeg >/dev/null || missing="$$missing ffmpeg"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v iptables >/dev/null || missing="$$missing iptables"; \
	command -v ip >/dev/null || missing="$$missing iproute2"; \
	command -v turnserver >/dev/null || missing="$$missing coturn"; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	if [ -n "$$missing" ]; then \
	  echo "installing$$missing"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	fi

# The browser SDK the demo pages load (npm package @flashphoner/websdk).
npm-deps:
	@command -v npm >/dev/null || { echo "installing npm"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q npm; }
	@# Reinstall when the lock file's content changed (not its mtime: a fresh
	@# checkout or a git worktree sharing node_modules must not wipe it).
	@if [ -f package.json ]; then \
	  want=$$(sha256sum package-lock.json | cut -d' ' -f1); \
	  if [ "$$(cat node_modules/.wcs-lock-sha 2>/dev/null)" != "$$want" ]; then \
	    npm ci --no-audit --no-fund && echo "$$want" > node_modules/.wcs-lock-sha; \
	  fi; \
	fi

# A wheel in dist/ with the browser SDK inside (setup.py copies it from
# node_modules/): `pip install dist/wcs-*.whl` gives a server that serves
# the demo pages from any directory. build/ goes first: setuptools would
# ship whatever an older build left in it.
dist: deps npm-deps
	rm -rf build dist
	$(PIP) wheel --no-deps -w dist .

BENCHES := bench/signalling.py bench/sfu.py bench/rtmp.py bench/mixer.py bench/loop_lag.py

bench: deps system-deps
	for script in $(BENCHES); do $(PY) $$script || exit 1; done

# wcs side by side with Janus and nginx-rtmp (bench/compare.py,
# docs/performance.md): the shared harnesses in SHARED_BENCH, each with the
# reference and wcs, then the ratios. Debian's references are installed when
# missing. Root (Janus runs in a network namespace of its own).
SHARED_BENCH ?= ../shared/bench
BENCH_COMPARE_ARGS ?=

bench-compare: deps system-deps
	@for h in sfu_load.py signalling_load.py rtmp_load.py; do \
	  test -f "$(SHARED_BENCH)/$$h" || { echo "bench-compare: $(SHARED_BENCH)/$$h is missing:" \
	    "set SHARED_BENCH to the directory of the shared harnesses"; exit 1; }; done
	@missing=""; \
	command -v janus >/dev/null || missing="$$missing janus"; \
	command -v nginx >/dev/null || missing="$$missing nginx-light"; \
	ls /usr/lib/nginx/modules/ngx_rtmp_module.so >/dev/null 2>&1 || missing="$$missing libnginx-mod-rtmp"; \
	if [ -n "$$missing" ]; then \
	  echo "installing$$missing"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	fi
	@$(PY) -c 'import psutil' 2>/dev/null || $(PIP) install -q psutil
	$(PY) bench/compare.py --shared $(SHARED_BENCH) $(BENCH_COMPARE_ARGS)

# Chat p99 at 4 000 deliveries/s (issue 15) with readers that keep up
# (bench/chat_latency.py, docs/performance.md): the minimal server (the
# floor), wcs and Janus's TextRoom in turn, CHATP99_ARGS rounds. The
# participants of wcs and the minimal server are the C reader
# (bench/chat_reader.c, built with gcc into state/); Janus's are Python's.
CHATP99_ARGS ?= --server minimal,wcs,janus --rounds 2

bench-chatp99: deps
	@command -v janus >/dev/null || { apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q janus; }
	@command -v gcc >/dev/null || { apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q gcc libc6-dev; }
	@$(PY) -c 'import psutil, uvloop' 2>/dev/null || $(PIP) install -q psutil uvloop
	$(PY) bench/chat_latency.py --shared $(SHARED_BENCH) $(CHATP99_ARGS)

# The soak (tests/soak/, docs/performance.md): every kind of client at once
# against one server; prints fps per player, server RSS and CPU every 10 s,
# and the host's load and starvation (a probe process): low buckets where the
# host starved are reported apart, as the host's.
# `make test` runs it for 150 s; here one hour unless SOAK_SECONDS says.
# SOAK_CLUSTER=1: the same clients over a redis-server and two nodes.
SOAK_SECONDS ?= 3600
SOAK_CLUSTER ?=

soak: deps system-deps
	SOAK_SECONDS=$(SOAK_SECONDS) SOAK_CLUSTER=$(SOAK_CLUSTER) $(PY) -m pytest tests/soak -s -q -p no:cacheprovider

# The network lab (tests/netlab/, docs/networks.md): every profile, H.264
# and VP8, NETLAB_PLAYERS decoding players, NETLAB_SECONDS per run, wcs and
# Janus (Debian's package, installed when missing) side by side; ends with
# issue 16's done-means table (markdown). Root. 320x240: at 640x480 the
# harness's 4 aiortc players and publisher do not keep up on 2 cores.
NETLAB_SECONDS ?= 30
NETLAB_PLAYERS ?= 4
NETLAB_SERVERS ?= wcs,janus
NETLAB_SIZE ?= 320x240
NETLAB_PROFILES ?= all

netlab: deps system-deps
	@case "$(NETLAB_SERVERS)" in *janus*) command -v janus >/dev/null || { \
	  echo "installing janus"; apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q janus; };; esac
	$(PY) bench/network.py --profile $(NETLAB_PROFILES) --codec h264,vp8 \
	  --server $(NETLAB_SERVERS) --players $(NETLAB_PLAYERS) --seconds $(NETLAB_SECONDS) \
	  --size $(NETLAB_SIZE)

# Coverage-guided fuzzing of every parser (docs/security.md, "Fuzzing"):
# FUZZ_SECONDS per target, two at a time; prints executions and failures per
# target. The grown corpus and any crash input stay in state/fuzz/.
FUZZ_SECONDS ?= 300

fuzz: deps
	$(PY) -m tests.fuzz.runner --all --seconds $(FUZZ_SECONDS) --work state/fuzz

clean:
	rm -rf $(VENV) node_modules state build dist .pytest_cache .hypothesis
