#!/usr/bin/env bash
# Browser checks in Debian's headless Chromium, driven by playwright-core
# (pinned in tests/browser/package-lock.json; it never downloads a browser):
# the sandbox checkout page turns a click on Pay into a paid order (and
# refuses a checkout URL without its token), and Swagger UI lists every
# operation, runs "Try it out" on a public one, and, authorized with a
# customer's token through its Authorize dialog, on a customer route.
# The shop checks customer tokens under a JWT secret fixed for the run; the
# customer's token is minted with `shop token` under the same secret.
# Screenshots go to target/ci/.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/target/ci"
mkdir -p "$out"

if [ ! -x /usr/bin/chromium ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q chromium >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }
fi
(cd "$root/tests/browser" && npm ci --no-audit --no-fund --silent)

[ -x "$root/target/debug/shop" ] || cargo build --quiet -p shop --bin shop

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
token="browser-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
export SHOP__AUTH__JWT_SECRET="jwt-$(python3 -c 'import secrets; print(secrets.token_hex(32))')"
customer_token=$("$root/target/debug/shop" token --user browser-user --ttl 1h)
data=$(mktemp -d)
DATABASE_URL="sqlite://$data/shop.db" SHOP__SERVER__BIND="127.0.0.1:$port" SHOP__AUTH__ADMIN_TOKEN="$token" \
    SHOP__LOG__FORMAT=json RUST_LOG=warn "$root/target/debug/shop" serve >"$out/shop-browser.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; wait $server 2>/dev/null || true; rm -rf "$data"' EXIT
for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$port/health/ready" >/dev/null 2>&1 && break
    sleep 0.1
done

node "$root/tests/browser/checkout.mjs" "http://127.0.0.1:$port" "$token" "$out" "$customer_token"
node "$root/tests/browser/swagger.mjs" "http://127.0.0.1:$port" "$token" "$out" "$customer_token"
