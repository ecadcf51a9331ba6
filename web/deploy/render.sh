#!/usr/bin/env bash
# Fill a web/deploy template: render.sh TEMPLATE NAME=VALUE... > OUT
#
# Every @NAME@ in TEMPLATE is replaced by VALUE (taken literally: no shell, sed or regex meaning).
# Fails, writing nothing, when a NAME is not in the template (a typo), a VALUE holds a newline,
# or an @NAME@ is left unfilled. The installer's server role (issue #17) and tests/test_web_nginx.py
# both render the shipped files with it; web/deploy/README.md lists the names.
set -euo pipefail

die() { printf 'render.sh: %s\n' "$*" >&2; exit 2; }

[ $# -ge 1 ] || die "usage: render.sh TEMPLATE NAME=VALUE... > OUT"
template="$1"; shift
[ -r "$template" ] || die "cannot read $template"
text="$(cat "$template"; printf x)"
text="${text%x}"

for pair in "$@"; do
    name="${pair%%=*}"
    value="${pair#*=}"
    [ "$name" != "$pair" ] || die "not NAME=VALUE: $pair"
    [[ "$name" =~ ^[A-Z][A-Z0-9_]*$ ]] || die "bad name: $name"
    [[ "$value" != *$'\n'* ]] || die "$name: the value holds a newline"
    [[ "$text" == *"@$name@"* ]] || die "$name: no @$name@ in $template"
    text="${text//"@$name@"/"$value"}"
done

if left="$(grep -o '@[A-Z][A-Z0-9_]*@' <<<"$text" | sort -u | tr '\n' ' ')" && [ -n "$left" ]; then
    die "unfilled in $template: $left"
fi
printf '%s' "$text"
