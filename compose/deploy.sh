#!/usr/bin/env sh
# One command to deploy Payloom on this Docker host: build the image, make the secrets
# (.env) and the certificates on first run, then start the backing services, the core
# services and the BFFs, each waiting for what it depends on to be healthy.
set -eu
cd "$(dirname "$0")"
image="${PAYLOOM_IMAGE:-payloom:latest}"
compose="docker compose -f docker-compose.yml -f docker-compose.services.yml -f docker-compose.bff.yml"

docker build -f ../docker/Dockerfile -t "$image" ..

if [ ! -f .env ]; then
    umask 077
    {
        echo "POSTGRES_PASSWORD=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
        echo "PAYLOOM_MASTER_KEY=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
        echo "PAYLOOM_ADMIN_JWT_SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
        echo "GRAFANA_ADMIN_PASSWORD=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
        echo "PAYLOOM_IMAGE=$image"
        echo "# Publisher keys whose signed plugins load, as a TOML array of hex keys."
        echo "PAYLOOM_TRUSTED_PLUGIN_KEYS=[]"
    } > .env
    echo "wrote compose/.env: keep it, and keep it private"
fi

# The image's user (65532) must read its key; the CA key stays with root.
if [ ! -f ../certs/ca.pem ]; then
    docker run --rm --user 0 -v "$(cd ../certs && pwd):/certs" "$image" \
        certs init --dir /certs --owner 65532
fi

$compose up -d --wait
echo "Payloom is up: the API at http://localhost:40080/v1, Grafana at http://localhost:40300"
