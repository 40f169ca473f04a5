#!/usr/bin/env bash
# The k2hdkc server image built from the AntPickax release sources, for
# operators who build from source (or patch) instead of pulling
# antpickax/k2hdkc, and for this project's tests. No Docker Hub and no
# Dockerfile: Debian bookworm roots made with debootstrap from the
# machine's Debian mirror, the four projects compiled in one of them, the
# result laid into the other and imported with `docker import`.
#
#   bash packaging/k2hdkc-image/source/build.sh SRC [IMAGE]
#
# SRC holds the release tarballs fullock-V.tar.gz, k2hash-V.tar.gz,
# chmpx-V.tar.gz and k2hdkc-V.tar.gz (a `git archive` of each tag; their
# SHA256SUMS is checked when SRC has one). IMAGE defaults to
# k2hdkc-real:<k2hdkc version>. The versions: FULLOCK=1.0.67 K2HASH=1.0.99
# CHMPX=1.0.111 K2HDKC=1.0.17 (environment); k2hdkc 1.0.16 pairs with
# CHMPX=1.0.109.
#
# The image runs as uid/gid 1001 (antpickax), with /etc/antpickax and
# /var/lib/antpickax its own; the agent gives it its arguments (no
# entrypoint). Beside the servers and k2hdkc's own tools it carries
# k2hdkc-bulk (k2hdkc-bulk.c here): writes and reads many keys through a
# slave with every value checked, for load checks and this project's tests.
# The patches in packaging/k2hdkc-image/patches/<project>-<version>/ are
# applied in name order (each says what it fixes and why);
# K2HDKC_IMAGE_PATCHES=none builds the release sources as they are.
# Cached per machine in $K2HDKC_IMAGE_CACHE (default
# /var/cache/k2hdkc-image): the two roots are made once, the libraries
# (fullock, k2hash) are compiled once for both server releases, and a
# build whose sources and recipe did not change is skipped while IMAGE
# exists.
# Nothing is installed on the host but debootstrap.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "${1:?usage: build.sh SRC [IMAGE]}" && pwd)
declare -A version=([fullock]=${FULLOCK:-1.0.67} [k2hash]=${K2HASH:-1.0.99}
                    [chmpx]=${CHMPX:-1.0.111} [k2hdkc]=${K2HDKC:-1.0.17})
projects=(fullock k2hash chmpx k2hdkc)   # in dependency order
image=${2:-k2hdkc-real:${version[k2hdkc]}}
cache=${K2HDKC_IMAGE_CACHE:-/var/cache/k2hdkc-image}
say() { printf '==> %s\n' "$*"; }
die() { echo "k2hdkc-image: $*" >&2; exit 1; }

# --- what is built: the tarballs and this recipe -----------------------------
tarballs=()
for p in "${projects[@]}"; do
    t=$src/$p-${version[$p]}.tar.gz
    [ -f "$t" ] || die "no $p ${version[$p]} in $src ($(basename "$t"))"
    tarballs+=("$t")
done
if [ -f "$src/SHA256SUMS" ]; then
    for t in "${tarballs[@]}"; do
        (cd "$src" && grep " $(basename "$t")\$" SHA256SUMS | sha256sum -c --quiet -) ||
            die "$(basename "$t") does not match $src/SHA256SUMS"
    done
fi
patches=()
if [ "${K2HDKC_IMAGE_PATCHES:-all}" != none ]; then
    for p in "${projects[@]}"; do
        for f in "$here/../patches/$p-${version[$p]}"/*.patch; do
            [ ! -f "$f" ] || patches+=("$f")
        done
    done
fi
stamp=$( (sha256sum "${tarballs[@]}" "$here/build.sh" "$here/k2hdkc-bulk.c" ${patches[@]+"${patches[@]}"} |
    cut -d' ' -f1) | sha256sum | cut -d' ' -f1)
patch_names=$(for f in ${patches[@]+"${patches[@]}"}; do printf '%s/%s,' "$(basename "$(dirname "$f")")" "$(basename "$f" .patch)"; done)
if [ "$(docker image inspect -f '{{ index .Config.Labels "org.k2hdkc.source" }}' "$image" 2>/dev/null)" = "$stamp" ]; then
    say "$image is built from these sources already"
    exit 0
fi

command -v debootstrap >/dev/null 2>&1 || {
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
}
timeout 30 docker info >/dev/null 2>&1 || die "no Docker engine answers"

# The machine's own Debian mirror (the only one it may reach), from apt's
# sources in either format.
mirror=${K2HDKC_IMAGE_MIRROR:-}
if [ -z "$mirror" ]; then
    mirror=$(grep -hE '^deb .* bookworm .*main' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
        grep -oE 'https?://[^ ]+' | head -n 1 || true)
fi
if [ -z "$mirror" ]; then
    mirror=$(awk -v RS= '/Suites:[^\n]*bookworm/ && /Components:[^\n]*main/' /etc/apt/sources.list.d/*.sources 2>/dev/null |
        grep -oE '^URIs: *[^ ]+' | head -n 1 | sed 's/^URIs: *//' || true)
fi
[ -n "$mirror" ] || die "no bookworm mirror in apt's sources (set K2HDKC_IMAGE_MIRROR)"

root_of() {  # NAME PACKAGES CHECK: a bookworm minbase root, made once (CHECK a
    # regular file in it: an alternatives link points at the host's root)
    local dir=$cache/$1
    if [ ! -e "$dir/$3" ]; then
        say "debootstrap the $1 root (once per machine)"
        rm -rf "$dir"
        timeout 1800 debootstrap --variant=minbase --include="$2" bookworm "$dir" "$mirror" \
            >"$cache/$1-debootstrap.log" 2>&1 || { tail -n 5 "$cache/$1-debootstrap.log" >&2; die "debootstrap $1 failed"; }
    fi
}
mkdir -p "$cache"
root_of build build-essential,autoconf,automake,libtool,pkg-config,libyaml-dev,libssl-dev,zlib1g-dev usr/bin/g++
root_of run libyaml-0-2,libssl3,zlib1g,netcat-openbsd,procps usr/bin/nc.openbsd

# --- compile, each project installed into the build root for the next -------
# Two stages: the libraries (fullock, k2hash), which both server releases
# share, and the servers (chmpx, k2hdkc). A stage whose sources, patches
# and commands did not change keeps its last install, so building the
# second release compiles only its servers. Before a stage installs, the
# files its last install put into the build root are removed, so one
# release's headers and libraries never leak into another's build.
build=$cache/build
compile() {  # PROJECT: unpack, patch, configure, make, install into the
    # build root and into /out/PROJECT for the image
    local p=$1 f flags=--with-openssl
    rm -rf "$build/work/$p" "$build/out/$p"
    mkdir -p "$build/work/$p" "$build/out/$p"
    tar -xzf "$src/$p-${version[$p]}.tar.gz" -C "$build/work/$p" --strip-components=1
    # autogen.sh takes the version from this file when there is no git.
    echo "${version[$p]}" >"$build/work/$p/RELEASE_VERSION"
    for f in ${patches[@]+"${patches[@]}"}; do
        [ "$(basename "$(dirname "$f")")" = "$p-${version[$p]}" ] || continue
        say "patch $p: $(basename "$f")"
        # the build root's patch (build-essential has it), not the host's
        chroot "$build" /usr/bin/patch -d "/work/$p" -p1 --forward --quiet <"$f" || die "$(basename "$f") does not apply to $p ${version[$p]}"
    done
    [ "$p" != fullock ] || flags=
    say "compile $p ${version[$p]}"
    chroot "$build" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root /bin/sh -ec \
        "cd /work/$p; ./autogen.sh; ./configure --prefix=/usr $flags; make -j$(nproc); make install; make install DESTDIR=/out/$p" \
        >"$cache/compile-$p.log" 2>&1 || { tail -n 20 "$cache/compile-$p.log" >&2; die "compiling $p failed (log: $cache/compile-$p.log)"; }
}
stage() {  # NAME PROJECT...: compile the projects unless this stage's
    # last install came from the same sources
    local name=$1 p f key; shift
    key=$( (echo "$stages_before"  # a stage is rebuilt when one it links to was
            for p in "$@"; do
                echo "$p-${version[$p]}"
                sha256sum "$src/$p-${version[$p]}.tar.gz" | cut -d' ' -f1
                for f in ${patches[@]+"${patches[@]}"}; do
                    [ "$(basename "$(dirname "$f")")" != "$p-${version[$p]}" ] || sha256sum "$f" | cut -d' ' -f1
                done
            done
            declare -f compile) | sha256sum | cut -d' ' -f1)
    if [ "$(cat "$build/.stage-$name" 2>/dev/null)" = "$key" ] &&
        (for p in "$@"; do [ -d "$build/out/$p/usr" ] || exit 1; done); then
        say "$name: $* as built before"
        stages_before+=$key
        return 0
    fi
    rm -f "$build/.stage-$name"
    if [ -f "$build/.stage-$name.files" ]; then
        (cd "$build" && xargs -0 -r rm -f <".stage-$name.files")
    fi
    for p in "$@"; do compile "$p"; done
    (cd "$build/out" && for p in "$@"; do (cd "$p" && find . ! -type d -print0); done) >"$build/.stage-$name.files"
    echo "$key" >"$build/.stage-$name"
    stages_before+=$key
}
stages_before=
mkdir -p "$build/work" "$build/out"
stage libraries fullock k2hash
stage servers chmpx k2hdkc

say "compile k2hdkc-bulk"
cp "$here/k2hdkc-bulk.c" "$build/work/"
chroot "$build" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin /bin/sh -ec \
    "cd /work; gcc -O2 -Wall -Wextra -Werror -o /work/k2hdkc-bulk k2hdkc-bulk.c -lk2hdkc" \
    >"$cache/compile-k2hdkc-bulk.log" 2>&1 || { tail -n 20 "$cache/compile-k2hdkc-bulk.log" >&2; die "compiling k2hdkc-bulk failed"; }

# --- the runtime root with what was built ------------------------------------
img=$cache/image
rm -rf "$img"
cp -a "$cache/run" "$img"
for p in "${projects[@]}"; do cp -a "$build/out/$p/usr/." "$img/usr/"; done
install -m 0755 "$build/work/k2hdkc-bulk" "$img/usr/bin/k2hdkc-bulk"
rm -rf "$img/usr/include" "$img/usr/share/man" "$img/usr/share/doc" "$img"/usr/lib/*.a "$img"/usr/lib/*.la \
    "$img"/var/cache/apt/archives/*.deb "$img"/var/lib/apt/lists/*
chroot "$img" /bin/sh -ec 'ldconfig
groupadd -g 1001 antpickax
useradd -u 1001 -g 1001 -M -d /var/lib/antpickax -s /usr/sbin/nologin antpickax
mkdir -p /etc/antpickax /var/lib/antpickax
chown 1001:1001 /etc/antpickax /var/lib/antpickax'
for b in chmpx k2hdkc chmpxlinetool k2hdkclinetool k2hlinetool k2hdkc-bulk; do
    [ -x "$img/usr/bin/$b" ] || die "$b was not built"
    ! chroot "$img" ldd "/usr/bin/$b" | grep -q 'not found' || die "$b has unresolved libraries"
done

say "import $image"
tar -C "$img" -c . | docker import \
    --change 'USER 1001:1001' --change 'CMD ["chmpx", "-h"]' \
    --change "LABEL org.k2hdkc.source=$stamp" \
    --change "LABEL org.k2hdkc.versions=fullock-${version[fullock]},k2hash-${version[k2hash]},chmpx-${version[chmpx]},k2hdkc-${version[k2hdkc]}" \
    --change "LABEL org.k2hdkc.patches=${patch_names%,}" \
    - "$image" >/dev/null
docker run --rm "$image" chmpx -v 2>&1 | head -n 3 || true
say "built $image"
