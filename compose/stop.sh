#!/usr/bin/env sh
# Stops the BFFs, then the core services, then the backing services; data volumes stay.
set -eu
cd "$(dirname "$0")"
docker compose -f docker-compose.yml -f docker-compose.services.yml -f docker-compose.bff.yml \
    stop -t 15
