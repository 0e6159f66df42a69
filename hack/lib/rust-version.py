"""Fails when a package of this workspace declares a rust-version below what one of its
dependencies declares, so the README's and Cargo.toml's minimum stays true.
Reads `cargo metadata --format-version 1` on standard input."""
import json
import sys

meta = json.load(sys.stdin)


def parse(v):
    return tuple(int(x) for x in (v.split(".") + ["0", "0"])[:3])


def show(v):
    return ".".join(map(str, v))


need, by = max(
    (parse(p["rust_version"]), p["name"])
    for p in meta["packages"]
    if p["source"] is not None and p.get("rust_version")
)
for p in meta["packages"]:
    if p["source"] is None:
        declared = p.get("rust_version")
        if declared is None or parse(declared) < need:
            sys.exit(f"{p['name']} declares rust-version {declared}, but {by} needs {show(need)}")
        print(f"{p['name']}: rust-version {declared} (the highest a dependency needs: {by} {show(need)})")
