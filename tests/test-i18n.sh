#!/bin/sh
# test-i18n.sh SRCDIR BUILD: the Simplified Chinese catalogue is complete (every message marked
# in the sources, as xgettext finds them now, has a translation that is neither empty nor fuzzy,
# and msgfmt accepts its format strings), and vitlab-cli speaks it when the locale asks. The
# locale: LANGUAGE=zh_CN over C.UTF-8, which every Debian has (glibc honours LANGUAGE unless the
# locale is plain "C"), so no zh_CN locale needs to be generated. TAP output.
set -u
src=$1
build=$2
cli=$build/app/vitlab-cli
po=$src/po/zh_CN.po
tmp=$(mktemp -d /tmp/vitlab-i18n-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
n=0
failed=0
ok () {
  n=$((n + 1))
  if [ "$1" = 0 ]; then echo "ok $n $2"; else echo "not ok $n $2"; failed=1; fi
}
contains () {
  case $1 in *"$2"*) return 0 ;; *) return 1 ;; esac
}
zh () {
  env LC_ALL=C.UTF-8 LANG=C.UTF-8 LANGUAGE=zh_CN "$@"
}

echo "1..7"
stats=$(msgfmt --check --statistics -o "$tmp/zh_CN.mo" "$po" 2>&1)
rc=$?
echo "# $stats"
case $stats in *untranslated*|*fuzzy*) rc=1 ;; esac
ok $rc "msgfmt --check: every message translated, none fuzzy"

(cd "$src" && grep -v '^#' po/POTFILES.in | grep . >"$tmp/files" &&
 xgettext --from-code=UTF-8 --keyword=_ --keyword=N_ --keyword=C_:1c,2 --keyword=NC_:1c,2 \
   --keyword=g_dngettext:2,3 \
   -f "$tmp/files" -o "$tmp/now.pot") >"$tmp/xgettext.log" 2>&1
rc=$?
[ $rc = 0 ] || sed 's/^/# /' "$tmp/xgettext.log"
ok $rc "xgettext over po/POTFILES.in"
msgcmp "$po" "$tmp/now.pot" >"$tmp/msgcmp.log" 2>&1
rc=$?
[ $rc = 0 ] || sed 's/^/# /' "$tmp/msgcmp.log" | head -40
ok $rc "po/zh_CN.po translates every message of the sources (msgcmp)"

test -f "$build/po/zh_CN/LC_MESSAGES/vitlab.mo"
ok $? "the build tree holds po/zh_CN/LC_MESSAGES/vitlab.mo"

out=$(zh "$cli" --help 2>&1)
contains "$out" "用法：" && contains "$out" "环境变量 VITLAB_THREADS"
rc=$?
[ $rc = 0 ] || echo "$out" | sed 's/^/# /'
ok $rc "vitlab-cli --help in Chinese"

out=$(zh "$cli" train --help 2>&1)
contains "$out" "训练轮数（10）" && contains "$out" "在带标签的图像数据集上微调 ViT 骨干网络。"
rc=$?
[ $rc = 0 ] || echo "$out" | sed 's/^/# /'
ok $rc "vitlab-cli train --help: summary and options in Chinese"

out=$(zh "$cli" info 2>&1)
rc=$?
[ $rc = 2 ] && contains "$out" "info 只接受一个 CHECKPOINT" &&
  contains "$out" "参见“vitlab-cli --help”"
rc=$?
[ $rc = 0 ] || echo "$out" | sed 's/^/# /'
ok $rc "vitlab-cli info without a checkpoint: the usage error in Chinese, exit status 2"
exit $failed
