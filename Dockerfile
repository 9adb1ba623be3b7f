# syntax=docker/dockerfile:1
# The `studio` binary in a slim Debian image.
#
#   docker build -t studio .
#   docker run -p 8080:8080 -p 1935:1935 -p 2935:2935/udp -p 8189:8189/udp \
#     -e STUDIO_WEBRTC__PUBLIC_IPS=127.0.0.1 -v studio-data:/var/lib/studio studio
#
# Configuration comes from STUDIO_* variables (README, "Configuration"); docker-compose.yml runs
# two nodes on PostgreSQL and an S3-compatible store.

# ---------------------------------------------------------------- build
FROM rust:1.95-bookworm AS builder

# What scripts/build-deps installs, less the ffmpeg tools: clang (bindgen reads FFmpeg's headers),
# pkg-config and FFmpeg 5.1's development libraries (the bundled transcoder links them).
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      clang pkg-config \
      libavcodec-dev libavformat-dev libavutil-dev libavfilter-dev libavdevice-dev \
      libswscale-dev libswresample-dev \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY . .
# The registry and target/ live in BuildKit cache mounts, so a rebuild after a source change
# recompiles only the workspace's own crates.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p studio-api --bin studio \
 && cp target/release/studio /usr/local/bin/studio

# ---------------------------------------------------------------- run
FROM debian:bookworm-slim

# FFmpeg 5.1's runtime libraries: the four the binary links (readelf -d: libavcodec.so.59,
# libavformat.so.59, libavutil.so.57, libswscale.so.6) and libswresample, which ffmpeg-sys links
# too (libavcodec59 depends on it anyway); apt brings what they need in turn. CA certificates for
# HTTPS (webhooks, S3, orchestrators, chain RPC) and curl for the health check.
# api/tests/deployment_files.rs checks this list against the binary the tests build.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      libavcodec59 libavformat59 libavutil57 libswscale6 libswresample4 \
      ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /var/lib/studio --shell /usr/sbin/nologin studio \
 && mkdir -p /var/lib/studio \
 && chown studio:studio /var/lib/studio

COPY --from=builder /usr/local/bin/studio /usr/local/bin/studio

# SQLite database and local media when no PostgreSQL / S3 is configured.
ENV STUDIO_DATA_DIR=/var/lib/studio
VOLUME /var/lib/studio
WORKDIR /var/lib/studio
USER studio

# HTTP API and HLS; RTMP ingest; SRT ingest (UDP); WebRTC media (UDP).
EXPOSE 8080 1935 2935/udp 8189/udp

# 200 when the database answers and the media store takes a write, 503 otherwise.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD curl -fsS -o /dev/null http://127.0.0.1:8080/api/healthz || exit 1

ENTRYPOINT ["studio"]
CMD ["serve", "--http-addr", "0.0.0.0:8080"]
