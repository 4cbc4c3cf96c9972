# Shared by the checks that need a Debian 12 of their own (tests/systemd, tests/image, tests/fresh):
# the mirror this machine's apt already names, and a minimal root made by debootstrap, cached
# outside the repository under a key made of what it holds. Sourced, not run.

# The Debian mirror of the machine's own apt sources (deb822 first, then the one-line format).
debian_mirror() {
    local mirror
    mirror=$(sed -n 's/^URIs: *\(http[^ ]*debian\)$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1)
    mirror=${mirror:-$(awk '$1 == "deb" { print $2; exit }' /etc/apt/sources.list 2>/dev/null)}
    echo "${mirror:-http://deb.debian.org/debian}"
}

# debian_root CACHE_DIR PACKAGES WHO: the path of a minbase bookworm root with PACKAGES (comma
# separated; may be empty) under CACHE_DIR, made now if it is not there yet. A download of a few
# hundred packages: tried twice before giving up, with the log's tail. WHO names the caller in
# its one line of progress.
debian_root() {
    local cache=$1 packages=$2 who=$3 key root include=()
    key=$(printf '%s bookworm' "$packages" | sha1sum | cut -c1-12)
    root=$cache/root-$key
    [ -n "$packages" ] && include=(--include="$packages")
    if [ ! -d "$root" ]; then
        echo "$who: making the Debian 12 root $root (debootstrap, about a minute)" >&2
        mkdir -p "$cache"
        rm -rf "$root.tmp"
        debootstrap --variant=minbase "${include[@]}" bookworm "$root.tmp" "$(debian_mirror)" >"$cache/debootstrap.log" 2>&1 ||
            { rm -rf "$root.tmp"; debootstrap --variant=minbase "${include[@]}" bookworm "$root.tmp" "$(debian_mirror)" \
                  >"$cache/debootstrap.log" 2>&1; } ||
            { tail -20 "$cache/debootstrap.log" >&2; return 1; }
        rm -rf "$root.tmp"/var/cache/apt/archives/*.deb "$root.tmp"/var/lib/apt/lists/*
        mv "$root.tmp" "$root"
    fi
    echo "$root"
}
