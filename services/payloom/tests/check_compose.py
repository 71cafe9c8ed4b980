"""Checks a deployment's compose files, as a compose implementation merged them.

Usage: check_compose.py MERGED_CONFIG_YAML RAW_FILE... -- SERVICE...

The merged configuration (the output of `docker-compose config`) must give every Payloom
service (the names after `--`) a health check, CPU and memory limits, rotated JSON logs,
and its certificate and key mounted read-only, and every other container a health check
unless its image has no shell to run one. The raw files must hold no secret: every
environment value whose name speaks of a password, key or secret is an interpolation.
"""

import re
import sys

import yaml

SECRET_NAME = re.compile(r"PASSWORD|SECRET|_KEY$|_PASS$|TOKEN")
# Images built FROM scratch: nothing inside can run a check.
NO_SHELL = {"redis-exporter", "kafka-exporter", "cadvisor", "node-exporter", "postgres-exporter"}


def fail(message):
    print(message)
    sys.exit(1)


def check_payloom_service(name, service):
    if "healthcheck" not in service:
        fail(f"{name}: no health check")
    limits = service.get("deploy", {}).get("resources", {}).get("limits", {})
    if "cpus" not in limits or "memory" not in limits:
        fail(f"{name}: no CPU or memory limit")
    logging = service.get("logging", {})
    if logging.get("driver") != "json-file" or "max-size" not in logging.get("options", {}):
        fail(f"{name}: logs are not rotated JSON")
    mounts = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            mounts[volume["target"]] = volume.get("read_only", False)
        else:
            parts = volume.split(":")
            mounts[parts[1]] = len(parts) > 2 and "ro" in parts[2].split(",")
    for file in ("ca.pem", f"{name}.pem", f"{name}.key"):
        target = f"/etc/payloom/certs/{file}"
        if target not in mounts:
            fail(f"{name}: {file} is not mounted")
        if not mounts[target]:
            fail(f"{name}: {file} is mounted writable")


def check_secrets(path):
    with open(path) as f:
        document = yaml.safe_load(f)
    for name, service in (document.get("services") or {}).items():
        environment = service.get("environment") or {}
        if isinstance(environment, list):
            environment = dict(item.split("=", 1) for item in environment)
        for key, value in environment.items():
            if SECRET_NAME.search(key) and not str(value).startswith("${"):
                fail(f"{path}: {name} holds the secret {key} itself")
            if "postgres://" in str(value) and re.search(r"://[^:/@]+:(?!\$\{)[^@]+@", str(value)):
                fail(f"{path}: {name}'s {key} holds a password")


def main():
    args = sys.argv[1:]
    split = args.index("--")
    merged_path, raw_files, payloom = args[0], args[1:split], set(args[split + 1 :])
    with open(merged_path) as f:
        merged = yaml.safe_load(f)
    services = merged.get("services") or {}
    missing = payloom - services.keys()
    if missing:
        fail(f"registered services without a container: {sorted(missing)}")
    for name, service in services.items():
        if name in payloom:
            check_payloom_service(name, service)
        elif name not in NO_SHELL and "healthcheck" not in service:
            fail(f"{name}: no health check")
    for path in raw_files:
        check_secrets(path)
    print(f"{len(services)} containers checked, {len(payloom)} of them Payloom services")


main()
