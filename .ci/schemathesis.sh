#!/usr/bin/env bash
# Runs schemathesis (pinned in .ci/requirements.txt, installed into a throwaway
# virtual environment under target/) against a freshly started shop, with
# credentials for both security schemes of openapi.yaml (a customer's token for
# `customerToken` operations, the admin token for `adminToken` ones; see
# .ci/schemathesis.toml), every check on, and a bounded number of examples.
#
#   .ci/schemathesis.sh DATABASE_URL [MAX_EXAMPLES]
#
# The database should be empty; the script starts target/debug/shop on it
# (building it when missing) and stops it afterwards.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
database_url=${1:?usage: .ci/schemathesis.sh DATABASE_URL [MAX_EXAMPLES]}
max_examples=${2:-100}
out="$root/target/ci"
venv="$root/target/schemathesis-venv"
mkdir -p "$out"

if [ ! -x "$venv/bin/st" ] || ! cmp -s "$root/.ci/requirements.txt" "$venv/requirements.txt"; then
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$root/.ci/requirements.txt"
    cp "$root/.ci/requirements.txt" "$venv/requirements.txt"
fi

[ -x "$root/target/debug/shop" ] || cargo build --quiet -p shop --bin shop

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
token="schemathesis-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
label=$(echo "$database_url" | cut -d: -f1)
log="$out/shop-schemathesis-$label.log"

webhook_secret="whsec-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
# Customer tokens are checked under a JWT secret fixed for the run; the
# customer's token is minted under it, for the user the OpenAPI examples name
# (`user-42`), so that an example `userId` is the caller's own (any other is a
# 403 user_mismatch). schemathesis sends missing and broken
# credentials on purpose (the auth checks expect 401s); the limit on failed
# authentications per address is raised so that they do not turn the rest of
# its requests from 127.0.0.1 into 429s (a legal answer, but one that would
# test nothing behind authentication).
export SHOP__AUTH__JWT_SECRET="jwt-$(python3 -c 'import secrets; print(secrets.token_hex(32))')"
customer_token=$("$root/target/debug/shop" token --user user-42 --ttl 6h)
# Staff routes take a staff JWT first (`staffToken`, listed before `adminToken`):
# one minted for a member of staff, with the default staff claim and role.
staff_token=$("$root/target/debug/shop" token --user staff-1 --staff --ttl 6h)
DATABASE_URL="$database_url" SHOP__SERVER__BIND="127.0.0.1:$port" SHOP__AUTH__ADMIN_TOKEN="$token" \
    SHOP__PAYMENT__WEBHOOK_SECRET="$webhook_secret" SHOP__AUTH__FAILURES_PER_MINUTE=100000 \
    SHOP__LOG__FORMAT=json RUST_LOG=warn "$root/target/debug/shop" serve >"$log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; wait $server 2>/dev/null || true' EXIT

for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$port/health/ready" >/dev/null 2>&1 && break
    sleep 0.1
done

cd "$out"
# The hooks sign notifications as a gateway would (see .ci/schemathesis_hooks.py);
# the configuration reads both credentials from the environment.
SHOP_CUSTOMER_TOKEN="$customer_token" SHOP_ADMIN_TOKEN="$token" SHOP_STAFF_TOKEN="$staff_token" \
SHOP_WEBHOOK_SECRET="$webhook_secret" PYTHONPATH="$root/.ci" SCHEMATHESIS_HOOKS=schemathesis_hooks \
    "$venv/bin/st" --config-file "$root/.ci/schemathesis.toml" run "$root/openapi.yaml" \
    --url "http://127.0.0.1:$port" \
    --checks all \
    --max-examples "$max_examples" \
    --generation-database none \
    --no-color \
    --report junit --report-junit-path "$out/schemathesis-$label.xml"

# A 5xx leaves an error in the server's log even when no check caught it.
# actix-http logs requests it cannot even parse (NUL bytes in headers, which
# schemathesis sends on purpose) at ERROR and answers them 400: not ours.
errors=$(grep '"level":"ERROR"' "$log" | grep -v '"message":"stream error: request parse error' || true)
if [ -n "$errors" ]; then
    echo "shop logged errors during the schemathesis run:" >&2
    echo "$errors" | head -20 >&2
    exit 1
fi
