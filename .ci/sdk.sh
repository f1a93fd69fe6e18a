#!/usr/bin/env bash
# A client SDK generated from openapi.yaml drives a whole purchase against a
# freshly started shop. openapi-python-client (pinned in
# .ci/requirements-sdk.txt) is installed into a throwaway virtual environment
# under target/; the client is generated into target/ci/shop-client and used
# as generated. The shop checks customer tokens under a JWT secret fixed for
# the run; the customer's token is minted with `shop token` under the same
# secret, and the admin token is the one the shop was started with.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/target/ci"
venv="$root/target/sdk-venv"
mkdir -p "$out"

if [ ! -x "$venv/bin/openapi-python-client" ] || ! cmp -s "$root/.ci/requirements-sdk.txt" "$venv/requirements.txt"; then
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$root/.ci/requirements-sdk.txt"
    cp "$root/.ci/requirements-sdk.txt" "$venv/requirements.txt"
fi

rm -rf "$out/shop-client"
(cd "$out" && PATH="$venv/bin:$PATH" openapi-python-client generate --path "$root/openapi.yaml" --output-path shop-client --overwrite >/dev/null)
"$venv/bin/pip" install --quiet --disable-pip-version-check --force-reinstall --no-deps "$out/shop-client"

[ -x "$root/target/debug/shop" ] || cargo build --quiet -p shop --bin shop

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
token="sdk-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
secret="whsec-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
export SHOP__AUTH__JWT_SECRET="jwt-$(python3 -c 'import secrets; print(secrets.token_hex(32))')"
customer="sdk-user"
customer_token=$("$root/target/debug/shop" token --user "$customer" --ttl 1h)
data=$(mktemp -d)
DATABASE_URL="sqlite://$data/shop.db" SHOP__SERVER__BIND="127.0.0.1:$port" SHOP__AUTH__ADMIN_TOKEN="$token" \
    SHOP__PAYMENT__WEBHOOK_SECRET="$secret" SHOP__LOG__FORMAT=json RUST_LOG=warn \
    "$root/target/debug/shop" serve >"$out/shop-sdk.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; wait $server 2>/dev/null || true; rm -rf "$data"' EXIT
for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$port/health/ready" >/dev/null 2>&1 && break
    sleep 0.1
done

"$venv/bin/python" "$root/tests/sdk/purchase.py" "http://127.0.0.1:$port" "$token" "$secret" "$customer" "$customer_token"
