# Shared set-up for scripts/serve and scripts/test: a project virtualenv in .venv.
# Sourced, not run. Re-running is cheap: pip skips what is already installed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SCAND_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"

need_python() {
  if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "scand needs Python >= 3.11 (found: $("$PY" --version 2>&1))" >&2
    exit 1
  fi
}

make_venv() {  # $1 = pip extras, e.g. "[test]" or ""
  need_python
  if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV" || { apt_install python3-venv && "$PY" -m venv "$VENV"; }
  fi
  # Reinstall only when what the install is made of changed (pip -e takes ~10 s even then).
  local stamp="$VENV/.scand-install-$(echo "$1" | tr -c 'a-z0-9\n' '_')"
  local want
  want="$(cat "$ROOT/pyproject.toml" "$ROOT/setup.py" "$ROOT"/clients/*.py | sha256sum | cut -d' ' -f1)"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    return 0
  fi
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e "$ROOT$1" 2> >(grep -v "^WARNING: Location" >&2)
  echo "$want" > "$stamp"
}

apt_install() {  # install Debian packages that are missing (needs root or sudo)
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
      || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing Debian packages: ${missing[*]}" >&2
  # Other jobs may hold the dpkg lock: wait for it (up to 15 min) instead of failing.
  $sudo apt-get -o DPkg::Lock::Timeout=900 update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get -o DPkg::Lock::Timeout=900 install -y -qq \
    "${missing[@]}" >/dev/null
}

unpack_postfix() {  # Debian's postfix .deb, unpacked (not installed: it conflicts with Exim)
  local dest="$ROOT/.cache/postfix"
  [ -x "$dest/usr/lib/postfix/sbin/master" ] && return 0
  local tmp; tmp="$(mktemp -d)"; chmod 755 "$tmp"
  ( cd "$tmp" && { apt-get download postfix 2>/dev/null \
      || { apt-get -o DPkg::Lock::Timeout=900 update -qq && apt-get download postfix; }; } )
  mkdir -p "$dest"
  dpkg-deb -x "$tmp"/postfix_*.deb "$dest"
  rm -rf "$tmp"
}
