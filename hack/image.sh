#!/usr/bin/env bash
# Builds the operator's OCI image on this machine, with no registry and no Docker engine:
#
#   hack/image.sh [OUT]     # default target/image/oauth-operator.oci.tar
#
# The release binary on a base assembled from Debian's own packages, downloaded with
# apt-get and unpacked with dpkg-deb (no maintainer script runs, nothing is installed):
# the C runtime the binary links (libc6, libgcc-s1: ld.so, libc, libm, libgcc_s; ldd picks
# the files), the Mozilla CA bundle from ca-certificates (concatenated here, as
# update-ca-certificates would), /etc/passwd and /etc/group with the one user 65532
# (nonroot). No shell, no package manager, no other file. The layout is distroless's
# (gcr.io/distroless/cc-debian12:nonroot, the Dockerfile's base), so the Dockerfile and
# this script make images that run the same way.
#
# umoci (Debian) writes the OCI layout: it needs no daemon and no privileges, builds a
# layer from a directory exactly as given, and sets the config (user, entrypoint, labels)
# by flag. buildah would need a storage driver and, run as it is here, root's overlay
# mounts; the crate registry has no image builder as well kept. Every file's mtime is
# SOURCE_DATE_EPOCH (the last commit's time) and owners are fixed, so the same commit and
# the same Debian packages give the same layer digest.
#
# The result is an OCI archive (a tar of the OCI layout): `podman load -i`, `ctr images
# import`, `skopeo copy oci-archive:... docker://<registry>/oauth-operator:<tag>`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

out=${1:-target/image/oauth-operator.oci.tar}
tag=${IMAGE_TAG:-$(git describe --always --dirty 2>/dev/null || echo dev)}
epoch=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}

need() { command -v "$1" >/dev/null || missing+=("$2"); }
missing=()
need umoci umoci
need dpkg-deb dpkg
if ((${#missing[@]})); then
  echo "==> installing ${missing[*]} (Debian packages)" >&2
  apt-get install -y "${missing[@]}" >/dev/null 2>&1 ||
    { apt-get update >/dev/null && apt-get install -y "${missing[@]}" >/dev/null; }
fi

echo "==> cargo build --release --bin oauth-operator" >&2
cargo build --release --locked --quiet --bin oauth-operator
bin=target/release/oauth-operator

work=$(mktemp -d /tmp/oauth-operator-image.XXXXXX)
trap 'rm -rf "$work"' EXIT
root=$work/rootfs
mkdir -p "$root" "$work/debs"

echo "==> Debian packages: libc6 libgcc-s1 ca-certificates" >&2
(cd "$work/debs" && apt-get download libc6 libgcc-s1 ca-certificates >/dev/null 2>&1) ||
  { apt-get update >/dev/null && (cd "$work/debs" && apt-get download libc6 libgcc-s1 ca-certificates >/dev/null); }
for deb in "$work"/debs/*.deb; do
  dpkg-deb -x "$deb" "$work/unpacked"
  dpkg-deb --showformat='${Package}=${Version}\n' -W "$deb" >>"$work/packages.txt"
done

# The shared objects the binary loads (ldd, resolved inside the unpacked packages), and
# each package's copyright notice.
copy() { # $1: path inside the packages
  local src=$work/unpacked$1
  [[ -e $src ]] || { echo "$1 is in no package of the base" >&2; exit 1; }
  mkdir -p "$root$(dirname "$1")"
  cp -a "$src" "$root$1"
  if [[ -L $src ]]; then
    local target
    target=$(readlink "$src")
    [[ $target == /* ]] || target=$(dirname "$1")/$target
    copy "$target"
  fi
}
for lib in $(ldd "$bin" | grep -o '/[^ ]*' | sort -u); do
  case $lib in
    # Debian's merged /usr: the packages ship /lib64/ld-linux and /lib/x86_64-linux-gnu.
    /lib*|/usr/lib*) copy "$lib" ;;
    *) echo "unexpected library $lib" >&2; exit 1 ;;
  esac
done
# Each package's copyright notice (libgcc-s1's doc directory is a link to gcc-12-base's,
# which is not in the base: its notice is the GCC runtime exception, named in the label).
for pkg in libc6 ca-certificates; do copy "/usr/share/doc/$pkg/copyright"; done

mkdir -p "$root/etc/ssl/certs" "$root/tmp"
chmod 1777 "$root/tmp"
cat "$work"/unpacked/usr/share/ca-certificates/mozilla/*.crt >"$root/etc/ssl/certs/ca-certificates.crt"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$root/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$root/etc/group"
mkdir -p "$root/home/nonroot"
install -m 0755 "$bin" "$root/oauth-operator"
find "$root" -exec touch -h -d "@$epoch" {} +

echo "==> OCI layout with umoci" >&2
layout=$work/layout
umoci init --layout "$layout"
created=$(date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ)
umoci new --image "$layout:$tag"
chown -R 0:0 "$root"
chown 65532:65532 "$root/home/nonroot"
# One layer holding the whole root filesystem, exactly as assembled above.
umoci insert --image "$layout:$tag" --history.created "$created" \
  --history.created_by "hack/image.sh" --history.comment "$(paste -sd' ' "$work/packages.txt") and the oauth-operator binary" \
  "$root" /
umoci config --image "$layout:$tag" --no-history \
  --created "$created" \
  --author "oauth-operator" \
  --architecture amd64 --os linux \
  --config.user 65532:65532 \
  --config.entrypoint /oauth-operator \
  --config.workingdir / \
  --config.env "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt" \
  --config.label "org.opencontainers.image.title=oauth-operator" \
  --config.label "org.opencontainers.image.revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)" \
  --config.label "org.opencontainers.image.created=$created" \
  --config.label "org.opencontainers.image.description=oauth-operator on Debian packages $(paste -sd' ' "$work/packages.txt")"
umoci gc --layout "$layout"

mkdir -p "$(dirname "$out")"
tar --sort=name --mtime="@$epoch" --owner=0 --group=0 --numeric-owner -C "$layout" -cf "$out.partial" .
mv "$out.partial" "$out"

# What it is: size, layers, user, entrypoint, every file.
manifest=$(python3 - "$layout" "$tag" <<'PY'
import json, sys
layout, tag = sys.argv[1], sys.argv[2]
index = json.load(open(f"{layout}/index.json"))
m = next(m for m in index["manifests"] if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag)
print(m["digest"])
PY
)
python3 - "$layout" "$manifest" "$out" <<'PY'
import json, os, sys
layout, digest, out = sys.argv[1:4]
blob = lambda d: f"{layout}/blobs/{d.replace(':', '/')}"
manifest = json.load(open(blob(digest)))
config = json.load(open(blob(manifest["config"]["digest"])))
print(f"image {out}: {os.path.getsize(out) / 1e6:.1f} MB archive, manifest {digest}")
for l in manifest["layers"]:
    print(f"  layer {l['digest']} {l['size'] / 1e6:.1f} MB compressed")
c = config["config"]
print(f"  user {c.get('User')}, entrypoint {c.get('Entrypoint')}, env {c.get('Env')}")
PY
echo "  files:"
(cd "$root" && find . -type f -o -type l | sort | sed 's/^\./    /')
echo "  from Debian: $(paste -sd' ' "$work/packages.txt")"
