# One-command setup: every target installs what it needs, idempotently.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
APT_PKGS := python3-bpfcc python3-venv libbpf-tools bpftool gcc bpftrace
STAMP := $(VENV)/.installed

.PHONY: setup test lint unit host wheel guest demo bench bench-guest clean

# The package's bytecode, written once here: where PYTHONDONTWRITEBYTECODE is set
# (as on the CI machines) every ksnoop process the tests start would compile every
# module again (about 0.15 s each natively, tens of times that in the TCG guest).
# Only modules changed since the last run are compiled; Python checks the source
# mtime, so a stale file is never used.
setup: $(STAMP)
	@$(PY) -m compileall -q ksnoop >/dev/null

# Debian packages: only when something is missing (apt-get is slow even as a no-op).
.apt-ok:
	@missing=$$(for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages: $$missing"; \
		(apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing) >/tmp/ksnoop-apt.log 2>&1 \
			|| { tail -20 /tmp/ksnoop-apt.log; exit 1; }; \
	fi
	@touch $@

# bcc only exists for Debian's /usr/bin/python3, so the venv must see its dist-packages.
$(STAMP): .apt-ok pyproject.toml
	@test -x $(PY) || /usr/bin/python3 -m venv --system-site-packages $(VENV)
	@$(PY) -m pip install -q -e '.[test]'
	@touch $@

# Under make test a skipped test is a failed test (tests/conftest.py).
export KSNOOP_STRICT := 1

lint: setup
	$(VENV)/bin/ruff check ksnoop tests bench tools

# The unit tier runs with two pytest-xdist workers (it is CPU-bound and its
# tests share nothing); the host tier runs alone (its tests attach real
# programs and read the kernel's global BPF state).
unit: setup
	$(PY) -m pytest -q -n 2 tests/unit

host: setup
	$(PY) -m pytest -q tests/host

# The package as users install it: a wheel, in a fresh virtualenv, run from
# outside the source tree (so nothing is found next to the sources by luck).
WHEEL_DIR := build/wheel
wheel: setup
	@rm -rf $(WHEEL_DIR) && mkdir -p $(WHEEL_DIR)
	@$(PY) -m pip wheel -q --no-deps --no-build-isolation -w $(WHEEL_DIR) . >/dev/null
	@/usr/bin/python3 -m venv --system-site-packages $(WHEEL_DIR)/venv
	@$(WHEEL_DIR)/venv/bin/python -m pip install -q $(WHEEL_DIR)/ksnoop-*.whl
	cd / && $(CURDIR)/$(WHEEL_DIR)/venv/bin/ksnoop trace --dry-run 'ip_send_skb(skb->len > 0, skb, return)'
	@cd / && $(CURDIR)/$(WHEEL_DIR)/venv/bin/python -c 'import ksnoop, sys; sys.exit(0 if "/venv/" in ksnoop.__file__ else "ksnoop imported from " + ksnoop.__file__)'

guest: setup
	bash tests/vm/setup.sh
	bash tests/vm/guest-tests.sh

test: setup
	$(MAKE) --no-print-directory lint
	$(PY) -m pytest -q -n 2 tests/unit
	$(PY) -m pytest -q tests/host
	$(MAKE) --no-print-directory wheel
	$(MAKE) --no-print-directory guest

demo: setup
	bash tools/demo.sh

bench: setup
	$(PY) bench/info_speed.py
	$(PY) bench/load_speed.py
	$(PY) bench/render_speed.py

bench-guest: setup
	bash tests/vm/setup.sh
	bash bench/run-guest.sh

clean:
	rm -rf $(VENV) .apt-ok .venv-vng build *.egg-info
