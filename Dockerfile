# syntax=docker/dockerfile:1.7
# The inferops image: one binary (`inferops`) that runs the operator, the in-cluster load
# generator (`inferops loadgen`) and the simulated engine (`inferops sim`).
#   docker build -t inferops:dev .
# Multi-arch: docker buildx build --platform linux/amd64,linux/arm64 -t ... --push .
# Releases are built by .github/workflows/release.yml. See docs/install.md.

# The toolchain: rust-toolchain.toml's channel when the repository pins one, and never older
# than Cargo.toml's rust-version (tests/charts/test_release.py checks both).
ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY crds ./crds
# BuildKit cache mounts keep the crate downloads and compiled dependencies between builds.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin inferops \
 && install -D -m 0755 target/release/inferops /out/inferops

# glibc + libgcc only, no shell, no package manager; runs as uid/gid 65532 ("nonroot").
FROM gcr.io/distroless/cc-debian12:nonroot
# Cargo.toml's version (the release workflow passes it; a test keeps this default equal).
ARG VERSION=0.1.0
ARG SOURCE=https://github.com/inferops/inferops
LABEL org.opencontainers.image.title="inferops" \
      org.opencontainers.image.description="Kubernetes operator that serves LLMs with vLLM on GPU node pools and benchmarks them" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=build /out/inferops /usr/local/bin/inferops
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/inferops"]
CMD ["operator", "--metrics-addr=0.0.0.0:8080"]
