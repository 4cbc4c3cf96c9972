#!/bin/sh
# As the official redis image's entrypoint: redis-server listens on every interface, without
# protected mode (the container's network is the boundary).
if [ "$1" = redis-server ]; then
    shift
    exec redis-server --bind '* -::*' --protected-mode no "$@"
fi
exec "$@"
