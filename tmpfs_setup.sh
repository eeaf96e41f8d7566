#!/usr/bin/env bash
# Give kerash a RAM work folder and print the line that points the tools at it.
#
#   eval "$(./tmpfs_setup.sh 512m)"     # mount (or fall back), then export KERASH_WORKDIR
#   ./tmpfs_setup.sh --umount           # undo
#
# As root (or with password-less sudo) a tmpfs of SIZE is mounted at
# ./kerash_mountpoint, as KeraSH did.  Otherwise, or when mounting is not
# allowed (containers), a private folder under /dev/shm, which is already a
# RAM tmpfs on Linux, is used instead.  Running it twice is harmless, and an
# existing writable $KERASH_WORKDIR is kept.
# Only the export line goes to standard output; messages go to standard error.
set -euo pipefail

usage() {
    sed -n '2,12s/^# \{0,1\}//p' "$0"
    echo "usage: $0 [SIZE] | --umount | --help   (SIZE as for mount -o size=, default 512m)"
}

mountpoint_dir="$PWD/kerash_mountpoint"
fallback_dir="/dev/shm/kerash-$(id -un)"

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; elif sudo -n true 2>/dev/null; then sudo -n "$@"; else return 1; fi
}

is_mounted() {
    # /proc/mounts escapes spaces as \040; compare both forms.
    awk -v p="$1" -v q="${1// /\\040}" '$2 == p || $2 == q { found = 1 } END { exit !found }' /proc/mounts 2>/dev/null
}

case "${1:-}" in
    -h|--help)
        usage
        exit 0
        ;;
    --umount|--unmount)
        if is_mounted "$mountpoint_dir"; then
            as_root umount "$mountpoint_dir" && echo "tmpfs_setup: unmounted $mountpoint_dir" >&2
        fi
        [ -d "$mountpoint_dir" ] && rmdir "$mountpoint_dir" 2>/dev/null || true
        if [ -d "$fallback_dir" ]; then
            rm -rf -- "$fallback_dir" && echo "tmpfs_setup: removed $fallback_dir" >&2
        fi
        echo "unset KERASH_WORKDIR"
        exit 0
        ;;
    -*)
        echo "tmpfs_setup: error: unknown option $1" >&2
        usage >&2
        exit 2
        ;;
esac

if [ -n "${KERASH_WORKDIR:-}" ] && [ -d "$KERASH_WORKDIR" ] && [ -w "$KERASH_WORKDIR" ]; then
    echo "tmpfs_setup: keeping KERASH_WORKDIR=$KERASH_WORKDIR" >&2
    echo "export KERASH_WORKDIR=$(printf '%q' "$KERASH_WORKDIR")"
    exit 0
fi

size="${1:-512m}"
if ! [[ "$size" =~ ^[0-9]+[kmgKMG%]?$ ]]; then
    echo "tmpfs_setup: error: bad size '$size' (examples: 512m, 2g, 50%)" >&2
    exit 2
fi

if is_mounted "$mountpoint_dir"; then
    echo "tmpfs_setup: $mountpoint_dir is already a tmpfs" >&2
    echo "export KERASH_WORKDIR=$(printf '%q' "$mountpoint_dir")"
    exit 0
fi

mkdir -p "$mountpoint_dir"
if as_root mount -t tmpfs -o "size=$size,mode=1777" tmpfs "$mountpoint_dir" 2>/dev/null; then
    echo "tmpfs_setup: mounted a $size tmpfs at $mountpoint_dir" >&2
    echo "export KERASH_WORKDIR=$(printf '%q' "$mountpoint_dir")"
    exit 0
fi
rmdir "$mountpoint_dir" 2>/dev/null || true

if [ -d /dev/shm ] && [ -w /dev/shm ]; then
    mkdir -p "$fallback_dir"
    chmod 700 "$fallback_dir"
    echo "tmpfs_setup: cannot mount here; using $fallback_dir (/dev/shm is a RAM tmpfs)" >&2
    echo "export KERASH_WORKDIR=$(printf '%q' "$fallback_dir")"
    exit 0
fi

tmp="${TMPDIR:-/tmp}/kerash-$(id -un)"
mkdir -p "$tmp"
chmod 700 "$tmp"
echo "tmpfs_setup: warning: no tmpfs available; using $tmp on disk" >&2
echo "export KERASH_WORKDIR=$(printf '%q' "$tmp")"
