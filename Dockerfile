# syntax=docker/dockerfile:1
# The oauth-operator image: one binary, both components (`controller`, `server`).
#
#   docker build -t <registry>/oauth-operator:<tag> .
#   docker push <registry>/oauth-operator:<tag>
#
# hack/image.sh builds the same layout without Docker or a registry (Debian's packages and
# umoci): the binary at /oauth-operator, glibc, libgcc, CA certificates, user 65532.
#
# Needs BuildKit (the default builder of current Docker) for the cache mounts: the cargo
# registry and target directory survive between builds, so a rebuild after a source change
# recompiles only this crate.

FROM rust:1-bookworm AS build
WORKDIR /src
# Only what `cargo build` reads (.dockerignore keeps the rest out of the context).
# tests/ and envtest/ are there because Cargo.toml declares the test targets and the
# workspace member; neither is compiled (`--bin oauth-operator` builds the product alone).
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY tests ./tests
COPY envtest ./envtest
COPY crds ./crds
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --bin oauth-operator \
 && cp target/release/oauth-operator /oauth-operator

# glibc, libgcc and CA certificates, no shell, no package manager; Debian 12 like the
# builder, so the glibc the binary was linked against is the one it runs on.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /oauth-operator /oauth-operator
USER 65532:65532
ENTRYPOINT ["/oauth-operator"]
