#!/bin/sh
# /usr/bin/portd: runs the compiled daemon in ../lib/portd (relative to this script, so the staged tree
# pkg/root/usr/bin/portd runs in place too) with the Node/V8 flags listed in ../lib/portd/node-options.
set -eu
lib=$(readlink -f "$(dirname "$(readlink -f "$0")")/../lib/portd")
# installed: the packaged dependency's node; staged in a checkout: whatever node is on PATH
node=/usr/bin/node
[ "$lib" = /usr/lib/portd ] || node=node
# one flag or more per line; '#' starts a comment
flags=$(sed -e 's/#.*//' "$lib/node-options")
set -f
# shellcheck disable=SC2086 # the flags are meant to be split into words
exec "$node" $flags "$lib/bin/portd.js" "$@"
