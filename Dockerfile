# syntax=docker/dockerfile:1
# The oms binary in a small runtime image. Build: docker build -t oms .  (or docker compose build)
# The binary embeds its migrations and applies them at start-up.

FROM rust:1-bookworm AS builder
WORKDIR /src
# sqlx: never reach for a database while compiling
ENV SQLX_OFFLINE=true CARGO_TERM_COLOR=never
COPY . .
# caches survive between builds (BuildKit); the binary is copied out of the cached target dir
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p oms --bin oms \
 && install -D -m 0755 target/release/oms /out/oms

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin oms
COPY --from=builder /out/oms /usr/local/bin/oms
USER 10001:10001
ENV OMS_BIND=0.0.0.0:8080
EXPOSE 8080
ENTRYPOINT ["oms"]
CMD ["serve"]
