#!/usr/bin/env bash
# Give kerash a RAM work folder and print the line that points the tools at it.
#
#   eval "$(./tmpfs_setup.sh 512m)"         # mount (or fall back), then export KERASH_WORKDIR
#   eval "$(./tmpfs_setup.sh --umount)"     # undo what it set up for this folder
#   eval "$(./tmpfs_setup.sh --umount DIR)" # undo DIR only, from any folder
#   ./tmpfs_setup.sh --all                  # list, then undo, what it set up anywhere
#
# As root (or with password-less sudo) a tmpfs of SIZE is mounted at
# ./kerash_mountpoint, as KeraSH did.  Otherwise, or when mounting is not
# allowed (containers), a private folder under /dev/shm, which is already a
# RAM tmpfs on Linux, is used instead (one per folder it is run from).
# Running it twice is harmless, and an existing writable $KERASH_WORKDIR is
# kept.  What it mounts or creates is recorded, with the folder it was run
# from, in $XDG_RUNTIME_DIR (else $TMPDIR, else /tmp): a bare --umount undoes
# only what was set up from the folder it runs in, so another checkout's RAM
# folder is never touched.  A folder that was there before is used but never
# recorded, so --umount leaves it alone.  Only the line to eval goes to
# standard output (it also sets KERASH_TMPFS_MADE=1 when this run mounted or
# created the folder, else 0); messages go to standard error.
set -euo pipefail

usage() {
    sed -n '2,20s/^# \{0,1\}//p' "$0"
    echo "usage: $0 [SIZE] | --umount [DIR] | --all | --help   (SIZE as for mount -o size=, default 512m)"
}

mountpoint_dir="$PWD/kerash_mountpoint"
# One per folder run from: two checkouts never share (nor remove) each other's.
fallback_dir="/dev/shm/kerash-$(id -un)-$(printf '%s' "$PWD" | cksum | cut -d' ' -f1)"
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

remember() {  # remember KIND PATH: a 'mount' or a 'folder' this script made, for the folder it runs in
    local line
    line=$(printf '%s\t%s\t%s' "$1" "$2" "$PWD")
    grep -qxF "$line" "$record" 2>/dev/null && return 0
    # What is made stays usable even when it cannot be recorded (only --umount is lost).
    { printf '%s\n' "$line" >> "$record"; } 2>/dev/null ||
        echo "tmpfs_setup: warning: cannot write $record: --umount will not know $2 (undo it by hand)" >&2
}

records() {  # the record as lines KIND<TAB>PATH<TAB>OWNER (older lines 'KIND PATH' have no owner)
    [ -f "$record" ] || return 0
    local line kind rest
    while IFS= read -r line; do
        case "$line" in
            *$'\t'*) printf '%s\n' "$line" ;;
            *) kind=${line%% *}; rest=${line#* }; printf '%s\t%s\t\n' "$kind" "$rest" ;;
        esac
    done < "$record"
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
    --umount|--unmount|--all)
        # --umount DIR: DIR only; --umount: what was set up from this folder; --all: everything recorded.
        mode=here only=""
        if [ "$1" = --all ]; then
            mode=all
        elif [ -n "${2:-}" ]; then
            mode=dir only=$(cd "$2" 2>/dev/null && pwd || echo "$2")
        fi
        all=$(records)
        if [ "$mode" = all ]; then
            if [ -z "$all" ]; then
                echo "tmpfs_setup: nothing recorded in $record" >&2
            else
                echo "tmpfs_setup: --all undoes every recorded folder and mount:" >&2
                printf '%s\n' "$all" | while IFS=$'\t' read -r kind path owner; do
                    echo "  $kind $path${owner:+ (set up from $owner)}" >&2
                done
            fi
        fi
        kept=() status=0 found=0
        while IFS=$'\t' read -r kind path owner; do
            [ -n "$kind" ] || continue
            if [ "$mode" = all ] || { [ "$mode" = dir ] && [ "$path" = "$only" ]; } ||
               { [ "$mode" = here ] && [ "$owner" = "$PWD" ]; }; then
                found=1
                undo "$kind" "$path" || { kept+=("$kind"$'\t'"$path"$'\t'"$owner"); status=1; }
            else
                kept+=("$kind"$'\t'"$path"$'\t'"$owner")
            fi
        done <<< "$all"
        if [ "$found" = 0 ] && [ "$mode" != all ]; then
            others=$(printf '%s\n' "$all" | grep -c . || true)
            hint=""
            [ "$others" -gt 0 ] && hint=" ($others other record(s): --all lists and undoes them)"
            echo "tmpfs_setup: nothing was set up for ${only:-this folder ($PWD)}; nothing removed$hint" >&2
        fi
        if [ -f "$record" ]; then
            if [ ${#kept[@]} -gt 0 ]; then
                printf '%s\n' "${kept[@]}" > "$record.tmp-$$" && mv "$record.tmp-$$" "$record"
            else
                rm -f "$record"
            fi
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

if [ -n "${KERASH_WORKDIR:-}" ]; then
    # The rule of every tool (kerash/files/workdir.py): the caller's work folder, created when missing.
    made=0
    if [ ! -d "$KERASH_WORKDIR" ]; then
        if ! why=$(mkdir -p -- "$KERASH_WORKDIR" 2>&1); then
            echo "tmpfs_setup: error: KERASH_WORKDIR=$KERASH_WORKDIR cannot be created: ${why##*: }" >&2
            exit 2
        fi
        KERASH_WORKDIR=$(cd "$KERASH_WORKDIR" && pwd)
        remember folder "$KERASH_WORKDIR"
        made=1
    fi
    if [ ! -w "$KERASH_WORKDIR" ] || [ ! -x "$KERASH_WORKDIR" ]; then
        echo "tmpfs_setup: error: KERASH_WORKDIR=$KERASH_WORKDIR is not writable" >&2
        exit 2
    fi
    echo "tmpfs_setup: keeping KERASH_WORKDIR=$KERASH_WORKDIR" >&2
    export_line "$KERASH_WORKDIR" "$made"
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
    echo "tmpfs_setup: mounted a $size tmpfs at $mountpoint_dir (undo: $0 --umount $(printf '%q' "$mountpoint_dir"))" >&2
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
    echo "tmpfs_setup: cannot mount here; using $fallback_dir (/dev/shm is a RAM tmpfs; undo: $0 --umount $fallback_dir)" >&2
    export_line "$fallback_dir" "$made"
    exit 0
fi

tmp="${TMPDIR:-/tmp}/${fallback_dir##*/}"
made=0
if [ ! -d "$tmp" ]; then
    mkdir -p "$tmp"
    remember folder "$tmp"
    made=1
fi
chmod 700 "$tmp"
echo "tmpfs_setup: warning: no tmpfs available; using $tmp on disk" >&2
export_line "$tmp" "$made"
