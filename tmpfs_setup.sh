#!/usr/bin/env bash
# Give kerash a RAM work folder and print the line that points the tools at it.
#
#   eval "$(./tmpfs_setup.sh 512m)"     # mount (or fall back), then export KERASH_WORKDIR
#   eval "$(./tmpfs_setup.sh --umount)" # undo what it set up, from any folder
#
# As root (or with password-less sudo) a tmpfs of SIZE is mounted at
# ./kerash_mountpoint, as KeraSH did.  Otherwise, or when mounting is not
# allowed (containers), a private folder under /dev/shm, which is already a
# RAM tmpfs on Linux, is used instead.  Running it twice is harmless, and an
# existing writable $KERASH_WORKDIR is kept.  What it mounts or creates is
# recorded in $XDG_RUNTIME_DIR (else $TMPDIR, else /tmp), so that --umount
# finds it from any folder; --umount DIR undoes only DIR.  A folder that was
# there before is used but never recorded, so --umount leaves it alone.
# Only the line to eval goes to standard output (it also sets
# KERASH_TMPFS_MADE=1 when this run mounted or created the folder, else 0);
# messages go to standard error.
set -euo pipefail

usage() {
    sed -n '2,17s/^# \{0,1\}//p' "$0"
    echo "usage: $0 [SIZE] | --umount [DIR] | --help   (SIZE as for mount -o size=, default 512m)"
}

mountpoint_dir="$PWD/kerash_mountpoint"
fallback_dir="/dev/shm/kerash-$(id -un)"
record="${XDG_RUNTIME_DIR:-${TMPDIR:-/tmp}}/kerash-tmpfs-$(id -u).list"

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; elif sudo -n true 2>/dev/null; then sudo -n "$@"; else return 1; fi
}

is_mounted() {
    # /proc/mounts escapes spaces as \040; compare both forms.
    awk -v p="$1" -v q="${1// /\\040}" '$2 == p || $2 == q { found = 1 } END { exit !found }' /proc/mounts 2>/dev/null
}

export_line() {  # export_line DIR MADE: the line to eval; MADE=1 when this run mounted or created DIR
    echo "export KERASH_WORKDIR=$(printf '%q' "$1"); KERASH_TMPFS_MADE=$2"
}

remember() {  # remember KIND PATH: a 'mount' or a 'folder' this script made
    grep -qxF "$1 $2" "$record" 2>/dev/null && return 0
    # What is made stays usable even when it cannot be recorded (only --umount from elsewhere is lost).
    { echo "$1 $2" >> "$record"; } 2>/dev/null ||
        echo "tmpfs_setup: warning: cannot write $record: --umount will not know $2 (undo it by hand)" >&2
}

undo() {  # undo KIND PATH; fails when a mount is still there (busy)
    case "$1" in
        mount)
            if is_mounted "$2"; then
                if ! as_root umount "$2"; then
                    echo "tmpfs_setup: error: cannot unmount $2 (in use?); it stays recorded" >&2
                    return 1
                fi
                echo "tmpfs_setup: unmounted $2" >&2
            fi
            rmdir "$2" 2>/dev/null || true
            ;;
        folder)
            if [ -d "$2" ]; then
                rm -rf -- "$2" && echo "tmpfs_setup: removed $2" >&2
            fi
            ;;
    esac
    return 0
}

case "${1:-}" in
    -h|--help)
        usage
        exit 0
        ;;
    --umount|--unmount)
        only=${2:-}
        if [ -n "$only" ]; then
            only=$(cd "$only" 2>/dev/null && pwd || echo "$only")
        fi
        kept=() status=0
        if [ -f "$record" ]; then
            while read -r kind path; do
                if [ -z "$only" ] || [ "$path" = "$only" ]; then
                    undo "$kind" "$path" || { kept+=("$kind $path"); status=1; }
                else
                    kept+=("$kind $path")
                fi
            done < "$record"
            if [ ${#kept[@]} -gt 0 ]; then
                printf '%s\n' "${kept[@]}" > "$record.tmp-$$" && mv "$record.tmp-$$" "$record"
            else
                rm -f "$record"
            fi
        elif [ -z "$only" ]; then
            # Nothing recorded (set up by an older version): what it would have made from here.
            undo mount "$mountpoint_dir" || status=1
            undo folder "$fallback_dir"
        fi
        echo "unset KERASH_WORKDIR"
        exit "$status"
        ;;
    -*)
        echo "tmpfs_setup: error: unknown option $1" >&2
        usage >&2
        exit 2
        ;;
esac

if [ -n "${KERASH_WORKDIR:-}" ] && [ -d "$KERASH_WORKDIR" ] && [ -w "$KERASH_WORKDIR" ]; then
    echo "tmpfs_setup: keeping KERASH_WORKDIR=$KERASH_WORKDIR" >&2
    export_line "$KERASH_WORKDIR" 0
    exit 0
fi

size="${1:-512m}"
if ! [[ "$size" =~ ^[0-9]+[kmgKMG%]?$ ]]; then
    echo "tmpfs_setup: error: bad size '$size' (examples: 512m, 2g, 50%)" >&2
    exit 2
fi

if is_mounted "$mountpoint_dir"; then
    echo "tmpfs_setup: $mountpoint_dir is already a tmpfs" >&2
    export_line "$mountpoint_dir" 0
    exit 0
fi

mkdir -p "$mountpoint_dir"
if as_root mount -t tmpfs -o "size=$size,mode=1777" tmpfs "$mountpoint_dir" 2>/dev/null; then
    remember mount "$mountpoint_dir"
    echo "tmpfs_setup: mounted a $size tmpfs at $mountpoint_dir (undo: $0 --umount)" >&2
    export_line "$mountpoint_dir" 1
    exit 0
fi
rmdir "$mountpoint_dir" 2>/dev/null || true

if [ -d /dev/shm ] && [ -w /dev/shm ]; then
    # Recorded (so removed by --umount) only when made now: a folder that was there is someone's.
    made=0
    if [ ! -d "$fallback_dir" ]; then
        mkdir -p "$fallback_dir"
        remember folder "$fallback_dir"
        made=1
    fi
    chmod 700 "$fallback_dir"
    echo "tmpfs_setup: cannot mount here; using $fallback_dir (/dev/shm is a RAM tmpfs; undo: $0 --umount)" >&2
    export_line "$fallback_dir" "$made"
    exit 0
fi

tmp="${TMPDIR:-/tmp}/kerash-$(id -un)"
made=0
if [ ! -d "$tmp" ]; then
    mkdir -p "$tmp"
    remember folder "$tmp"
    made=1
fi
chmod 700 "$tmp"
echo "tmpfs_setup: warning: no tmpfs available; using $tmp on disk" >&2
export_line "$tmp" "$made"
