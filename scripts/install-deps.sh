#!/bin/sh
# Installs every Debian package vitlab's build, tests and app use, and nothing that is
# already there. Uses sudo when not root. Safe to run again.
set -eu

# clang: make test's UBSan pass and make fuzz (libFuzzer); gettext: po/; fonts-noto-cjk: the
# Chinese translation's glyphs; dbus-daemon: dbus-run-session, the session bus make run starts when
# there is none (dconf saves the app's settings through it); Pango and cairo come with GTK, and
# vitlab-cli links them itself (predict's labelled boxes); libexif: photos' EXIF orientation; libwebp, libtiff: WebP and TIFF images
PACKAGES="
  build-essential pkg-config meson ninja-build python3
  libglib2.0-dev libjson-glib-dev libopenblas-dev libstb-dev libgtk-4-dev libepoxy-dev
  libpango1.0-dev libcairo2-dev
  libjpeg62-turbo-dev libpng-dev libexif-dev libwebp-dev libtiff-dev libzip-dev appstream gettext
  clang libclang-rt-14-dev
  xvfb xauth dataset-fashion-mnist python3-numpy python3-onnx
  python3-torch python3-torchvision python3-pil
  dbus-daemon dconf-gsettings-backend adwaita-icon-theme fonts-cantarell fonts-noto-cjk
"
if [ "${VITLAB_BENCH:-0}" = 1 ]; then
  PACKAGES="$PACKAGES python3-sklearn nodejs"
  # make interop installs onnxruntime-node with npm (Debian's npm package unless npm is already
  # there, e.g. bundled with a NodeSource nodejs, which conflicts with it)
  if ! command -v npm >/dev/null 2>&1; then
    PACKAGES="$PACKAGES npm"
  fi
fi

missing=""
for p in $PACKAGES; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  case "$status" in
    *"install ok installed"*) ;;
    *) missing="$missing $p" ;;
  esac
done

if [ -z "$missing" ]; then
  exit 0
fi

SUDO=""
if [ "$(id -u)" != 0 ]; then
  SUDO="sudo"
fi
echo "Installing:$missing"
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
# shellcheck disable=SC2086
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing
