#!/usr/bin/env bash
# Refreshes the vendored browser bundles from the npm registry: `assets/vendor/update.sh`.
# Each package lands in `<name>-<version>/` with its LICENSE, byte for byte as published
# (the version in the path lets the server cache these files for a year). After a version
# change, update the paths in src/assets.rs and assets/graphiql.html, and the table in
# assets/vendor/README.md (the script prints the integrity of each tarball).
set -euo pipefail
cd "$(dirname "$0")"

GRAPHIQL=3.9.0
REACT=18.3.1

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
(cd "$scratch" && npm pack --silent "graphiql@$GRAPHIQL" "react@$REACT" "react-dom@$REACT" >/dev/null)

unpack() { # <tarball> <dir> <file>...
  local tarball="$1" dir="$2"
  shift 2
  rm -rf "$dir" && mkdir -p "$dir"
  mkdir -p "$scratch/$dir" && tar xzf "$scratch/$tarball" -C "$scratch/$dir"
  for file in LICENSE "$@"; do cp "$scratch/$dir/package/$file" "$dir/"; done
  echo "$dir: sha512-$(openssl dgst -sha512 -binary "$scratch/$tarball" | base64 -w0)"
}

unpack "graphiql-$GRAPHIQL.tgz" "graphiql-$GRAPHIQL" graphiql.min.js graphiql.min.css
unpack "react-$REACT.tgz" "react-$REACT" umd/react.production.min.js
unpack "react-dom-$REACT.tgz" "react-dom-$REACT" umd/react-dom.production.min.js
