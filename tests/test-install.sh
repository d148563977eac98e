#!/bin/sh
# test-install.sh BUILD PREFIX BINDIR: installs the build (meson install into a temporary
# DESTDIR, so that the programs find their files relative to where they are) and runs the installed programs as a user would, from another folder: their version,
# vitlab-cli info on the installed shipped backbone, the data folder they use, the compiled
# schema, and the app without any schema installed. TAP output.
set -u
build=$1
prefix=$2
bindir=$3
case $bindir in /*) ;; *) bindir=$prefix/$bindir ;; esac

dest=$(mktemp -d /tmp/vitlab-install-XXXXXX)
trap 'rm -rf "$dest"' EXIT
root=$dest$prefix
n=0
failed=0
ok () {
  n=$((n + 1))
  if [ "$1" = 0 ]; then
    echo "ok $n $2"
  else
    echo "not ok $n $2"
    failed=1
  fi
}
contains () {
  case $1 in *"$2"*) return 0 ;; *) return 1 ;; esac
}

echo "1..10"
meson install -C "$build" --destdir "$dest" --no-rebuild --quiet >"$dest.log" 2>&1
rc=$?
[ $rc = 0 ] || sed 's/^/# /' "$dest.log"
rm -f "$dest.log"
ok $rc "meson install --destdir"

share=$root/share
# meson runs no post-install script under DESTDIR (a package's trigger compiles the schemas
# there); `meson install` into a real prefix runs gnome.post_install's glib-compile-schemas
if [ ! -e "$share/glib-2.0/schemas/gschemas.compiled" ]; then
  echo "# DESTDIR install: compiling the schemas as a package trigger would"
  glib-compile-schemas "$share/glib-2.0/schemas"
fi
missing=""
for f in "$dest$bindir/vitlab" "$dest$bindir/vitlab-cli" \
         "$share/glib-2.0/schemas/org.vitlab.Vitlab.gschema.xml" \
         "$share/glib-2.0/schemas/gschemas.compiled" \
         "$share/applications/org.vitlab.Vitlab.desktop" \
         "$share/icons/hicolor/scalable/apps/org.vitlab.Vitlab.svg" \
         "$share/metainfo/org.vitlab.Vitlab.metainfo.xml" \
         "$share/vitlab/backbones/vitlab-fmnist-tiny/model.safetensors" \
         "$share/vitlab/backbones/vitlab-fmnist-tiny/config.json" \
         "$share/vitlab/samples/0-t-shirt-top-0.png" \
         "$share/locale/zh_CN/LC_MESSAGES/vitlab.mo"; do
  [ -e "$f" ] || missing="$missing $f"
done
[ -z "$missing" ] || echo "# missing:$missing"
[ -z "$missing" ]
ok $? "binaries, compiled schema, desktop file, icon, metainfo, backbone, samples, catalogue installed"

n_samples=$(ls "$share/vitlab/samples" | grep -c '\.png$')
[ "$n_samples" = 30 ]
ok $? "30 samples installed (found $n_samples)"

cd /
unset VITLAB_DATA_DIR
out=$("$dest$bindir/vitlab-cli" --version 2>&1)
rc=$?
echo "$out" | sed 's/^/# /'
contains "$out" "vitlab-cli $(meson introspect "$build" --projectinfo | python3 -c 'import json,sys; print(json.load(sys.stdin)["version"])')"
ok $(( rc != 0 || $? != 0 )) "vitlab-cli --version"
# the installed copy uses the installed data, not the source tree's
contains "$out" "shipped files: $share/vitlab"
ok $? "vitlab-cli uses $share/vitlab"

out=$("$dest$bindir/vitlab-cli" info "$share/vitlab/backbones/vitlab-fmnist-tiny" 2>&1)
rc=$?
echo "$out" | sed 's/^/# /'
contains "$out" "width 96" && contains "$out" "vitlab_fmnist_tiny" && ! contains "$out" "vit_base"
ok $(( rc != 0 || $? != 0 )) "vitlab-cli info on the installed backbone, from /"

# the installed catalogue (the prefix's share/locale around the moved binary), and the
# translated desktop file
out=$(env LC_ALL=C.UTF-8 LANGUAGE=zh_CN "$dest$bindir/vitlab-cli" --help 2>&1)
contains "$out" "用法：" && grep -q '^GenericName\[zh_CN\]=视觉' "$share/applications/org.vitlab.Vitlab.desktop"
ok $? "the installed vitlab-cli in Chinese (LANGUAGE=zh_CN); the desktop file's zh_CN GenericName"

out=$("$dest$bindir/vitlab" --version 2>&1)
rc=$?
echo "$out" | sed 's/^/# /'
contains "$out" "vitlab 0"
ok $(( rc != 0 || $? != 0 )) "vitlab --version"

# the app with no schema anywhere GIO looks: a warning and in-memory settings, no abort
xvfb=""
[ -n "${DISPLAY:-}" ] || xvfb="xvfb-run -a"
shot=$dest/noschema.png
out=$(env -u GSETTINGS_SCHEMA_DIR -u GSETTINGS_BACKEND -u G_DEBUG XDG_DATA_DIRS=/nonexistent \
      XDG_DATA_HOME=$dest/home XDG_RUNTIME_DIR=$dest/run \
      timeout 300 $xvfb "$dest$bindir/vitlab" --backbone "$share/vitlab/backbones/vitlab-fmnist-tiny" \
      --screenshot "$shot" 2>&1)
rc=$?
echo "$out" | sed 's/^/# /'
[ $rc = 0 ] && [ -s "$shot" ] && contains "$out" "schema org.vitlab.Vitlab is not installed"
ok $? "vitlab without an installed schema: warns, runs, saves the screenshot"

# and with the installed prefix on XDG_DATA_DIRS: the installed schema, no warning
out=$(env -u GSETTINGS_SCHEMA_DIR -u G_DEBUG GSETTINGS_BACKEND=memory XDG_DATA_DIRS=$share \
      XDG_DATA_HOME=$dest/home XDG_RUNTIME_DIR=$dest/run \
      timeout 300 $xvfb "$dest$bindir/vitlab" --backbone "$share/vitlab/backbones/vitlab-fmnist-tiny" \
      --screenshot "$shot" 2>&1)
rc=$?
echo "$out" | sed 's/^/# /'
[ $rc = 0 ] && ! contains "$out" "not installed"
ok $? "vitlab with the installed schema"
exit $failed
