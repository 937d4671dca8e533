#!/bin/sh
# Inlined into the request as `payload` by `talis infra create` (the original read it on the server).
set -eu
echo "node $(hostname) up" > /var/log/talis-node.log
