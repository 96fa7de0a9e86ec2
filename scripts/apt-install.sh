# Sourced by the setup-*.sh scripts: `apt_install TAG PACKAGE WHY` installs a Debian package when
# apt-get is there (as root, or through sudo), retrying once after `apt-get update`. Without
# apt-get or the rights it says what to install and returns 0: set-up never fails the build.
apt_install() {
  local tag="$1" package="$2" why="$3" sudo=""
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "$tag: no apt-get; install $package ($why)" >&2
    return 0
  fi
  if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1; then sudo=sudo; else
      echo "$tag: run as root: apt-get install $package ($why)" >&2
      return 0
    fi
  fi
  echo "$tag: installing $package ($why)"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$package" >/dev/null 2>&1 || {
    $sudo apt-get update -qq >/dev/null 2>&1 || true
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$package" >/dev/null
  }
}
