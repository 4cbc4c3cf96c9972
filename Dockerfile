# redis-proxy in a container, run as a non-root user from a slim image that holds only the
# runtime libraries and the binary. `make check-image` builds it (buildah) and runs it (podman).
#   docker build -t redis-proxy .     (or: buildah bud --format docker -t redis-proxy .)
#   docker compose up                 (with compose.yaml: Redis and the proxy)

FROM debian:bookworm-slim AS build
WORKDIR /src
COPY . .
# make build-deps installs only what building needs (no recommends); the build runs the unit
# tests. The system tests are CI's job (make check), not each image build's.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends make \
 && make build-deps \
 && make -j"$(nproc)" all unit \
 && make install DESTDIR=/out PREFIX=/usr \
 && install -D -m 0644 conf/docker.ini /out/etc/redis-proxy/proxy.ini

FROM debian:bookworm-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        libevent-2.1-7 libevent-openssl-2.1-7 libhiredis0.14 libinih1 libsystemd0 libssl3 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin redis-proxy
COPY --from=build /out/usr/sbin/redis-proxy /usr/sbin/redis-proxy
COPY --from=build --chown=root:redis-proxy /out/etc/redis-proxy/proxy.ini /etc/redis-proxy/proxy.ini
RUN chmod 0640 /etc/redis-proxy/proxy.ini
USER redis-proxy
# HTTP, the Redis protocol, and the admin endpoint (/metrics, /healthz, /readyz).
EXPOSE 8080 6380 9121
# /readyz at the admin address of the same file (redis-proxy --health, no curl in the image):
# unhealthy once Redis has been out of reach for three probes in a row (30 s), not at a blip;
# failures in the first 10 s (starting) do not count.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["/usr/sbin/redis-proxy", "--health", "-c", "/etc/redis-proxy/proxy.ini"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/sbin/redis-proxy"]
CMD ["-c", "/etc/redis-proxy/proxy.ini"]
