# redis-proxy in a container: built and tested with the same make targets as CI, run as a
# non-root user from a slim image that holds only the runtime libraries and the binary.
#   docker build -t redis-proxy .
#   docker compose up          (with compose.yaml: Redis and the proxy)

FROM debian:bookworm-slim AS build
WORKDIR /src
COPY . .
# make deps installs the build and test packages (as .ci/run does); make check builds and runs
# every test; make install lays the result out under /out.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends make \
 && make deps \
 && make check \
 && make install DESTDIR=/out PREFIX=/usr \
 && install -D -m 0644 conf/docker.ini /out/etc/redis-proxy/proxy.ini

FROM debian:bookworm-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        libevent-2.1-7 libhiredis0.14 libinih1 libsystemd0 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin redis-proxy
COPY --from=build /out/usr/sbin/redis-proxy /usr/sbin/redis-proxy
COPY --from=build --chown=root:redis-proxy /out/etc/redis-proxy/proxy.ini /etc/redis-proxy/proxy.ini
RUN chmod 0640 /etc/redis-proxy/proxy.ini
USER redis-proxy
# HTTP, the Redis protocol, and the admin endpoint (/metrics, /healthz, /readyz).
EXPOSE 8080 6380 9121
# No curl in the image: bash's /dev/tcp asks /healthz.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/9121 && printf 'GET /healthz HTTP/1.0\\r\\n\\r\\n' >&3 && head -n1 <&3 | grep -q ' 200 '"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/sbin/redis-proxy"]
CMD ["-c", "/etc/redis-proxy/proxy.ini"]
