# A stand-in for the redis:7 image that compose.yaml names, for make check-image, where nothing
# can be pulled: Debian's redis-server, started as the official image starts it (every interface,
# no protected mode) when the command is redis-server.
FROM debian:bookworm-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server \
 && rm -rf /var/lib/apt/lists/*
COPY redis-entrypoint.sh /usr/local/bin/redis-entrypoint.sh
ENTRYPOINT ["/usr/local/bin/redis-entrypoint.sh"]
CMD ["redis-server"]
