#!/usr/bin/env bash
# Install everything and run the full test suite: lint, types, then the SQLite leg
# and the MariaDB leg. Works on a fresh machine (Debian, root for apt) and on a
# developer machine. Exits non-zero if anything fails (including "no tests ran").
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n==> %s\n' "$*"; }

# 1. System packages (only what is missing; needs root or sudo). Two runs at once on one machine
# take turns (flock): the second one waits, then finds the packages installed; apt's own locks are
# waited for too (another apt on the machine).
missing_packages() {
  need_apt=()
  command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || need_apt+=(mariadb-server)
  command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
  command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need_apt+=(nginx-light)  # the edge (tests/test_edge_nginx.py)
  command -v promtool >/dev/null 2>&1 || need_apt+=(prometheus)  # promtool + a real Prometheus for the monitoring tests
  # headless Chromium and its driver for tests/test_browser_conversions.py (selenium drives them)
  { command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; } || need_apt+=(chromium chromium-driver)
}
missing_packages
if [ ${#need_apt[@]} -gt 0 ]; then
  exec 9>"${TMPDIR:-/tmp}/pixeltrack-apt.lock"
  flock -w 1800 9
  missing_packages
  if [ ${#need_apt[@]} -gt 0 ]; then
    log "apt-get install ${need_apt[*]}"
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq "${need_apt[@]}"
  fi
  exec 9>&-
fi

# 2. Services: start MariaDB and Redis when they are not answering.
bash scripts/ensure-services.sh

# 3. Python environment.
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  log "creating .venv"
  "$PY" -m venv .venv
fi
log "pip install -e .[dev]"
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[dev]'

# 4. Static checks.
log "ruff"
.venv/bin/ruff check app tests alembic/env.py scripts bench
.venv/bin/ruff format --check app tests alembic/env.py scripts bench
log "mypy app"
.venv/bin/mypy
log "mypy tests (not strict: [[tool.mypy.overrides]] for tests.* in pyproject.toml)"
.venv/bin/mypy tests
log "typos (spelling of identifiers and docs)"
.venv/bin/typos

# 5. Both database legs, each reporting the line coverage of app/ (no threshold).
# pytest exit 5 ("no tests collected") counts as failure.
status=0
for leg in sqlite mysql; do
  log "pytest --db $leg"
  start=$(date +%s)
  set +e
  .venv/bin/python -m pytest -q --db "$leg" --cov=app --cov-report=term "$@"
  rc=$?
  set -e
  echo "leg $leg: exit $rc in $(( $(date +%s) - start ))s"
  if [ "$rc" -ne 0 ]; then status=1; fi
done
exit "$status"
