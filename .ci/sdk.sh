#!/usr/bin/env bash
# A client SDK generated from openapi.yaml, exactly as the README says, drives
# a freshly started shop:
# 1. the README's recipe (the block after `<!-- sdk-recipe: ... -->`) runs as
#    written, twice: it must work again over its own output, and leave nothing
#    that git would see (it writes into target/);
# 2. the README's example program (after `<!-- sdk-example: ... -->`) runs
#    against `shop serve --demo` and must print an order and two refusals;
# 3. tests/sdk/purchase.py drives a whole purchase through the same client.
# The shop checks customer tokens under a JWT secret fixed for the run; the
# customers' tokens are minted with `shop token` under the same secret, and
# the admin token is the one the shop was started with.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/target/ci"
mkdir -p "$out"

# The fenced block that follows the README line starting `<!-- NAME:`.
readme_block() {
    python3 "$root/.ci/readme-block.py" "$root/README.md" "$1"
}

git_sees() {
    git -C "$root" status --porcelain --untracked-files=all 2>/dev/null || true
}

recipe=$(readme_block sdk-recipe)
before=$(git_sees)
for run in 1 2; do
    echo "README's SDK recipe, run $run:"
    (cd "$root" && bash -e -c "$recipe") >"$out/sdk-recipe-$run.log" 2>&1 || {
        cat "$out/sdk-recipe-$run.log" >&2
        echo "the README's SDK recipe failed on run $run" >&2
        exit 1
    }
done
after=$(git_sees)
if [ "$before" != "$after" ]; then
    echo "the README's SDK recipe left files that git sees:" >&2
    diff <(echo "$before") <(echo "$after") >&2 || true
    exit 1
fi
python="$root/target/sdk/bin/python"

[ -x "$root/target/debug/shop" ] || cargo build --quiet -p shop --bin shop

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
token="sdk-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
secret="whsec-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
export SHOP__AUTH__JWT_SECRET="jwt-$(python3 -c 'import secrets; print(secrets.token_hex(32))')"
customer="sdk-user"
customer_token=$("$root/target/debug/shop" token --user "$customer" --ttl 1h)
alice_token=$("$root/target/debug/shop" token --user alice --ttl 1h)
data=$(mktemp -d)
DATABASE_URL="sqlite://$data/shop.db" SHOP__SERVER__BIND="127.0.0.1:$port" SHOP__AUTH__ADMIN_TOKEN="$token" \
    SHOP__PAYMENT__WEBHOOK_SECRET="$secret" SHOP__LOG__FORMAT=json RUST_LOG=warn \
    "$root/target/debug/shop" serve --demo >"$out/shop-sdk.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; wait $server 2>/dev/null || true; rm -rf "$data"' EXIT
for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$port/health/ready" >/dev/null 2>&1 && break
    sleep 0.1
done

# The README's example, as written: where a product id comes from, an order, and what refusals look like.
readme_block sdk-example >"$out/sdk-example.py"
SHOP_URL="http://127.0.0.1:$port" ALICE_TOKEN="$alice_token" "$python" "$out/sdk-example.py" | tee "$out/sdk-example.log"
for expected in 'in stock, id ' ': pending_payment, ' 'refused: 409 insufficient_stock: ' 'refused: 404 product_not_found: '; do
    grep -qF -- "$expected" "$out/sdk-example.log" || {
        echo "the README's SDK example did not print '$expected'" >&2
        exit 1
    }
done

"$python" "$root/tests/sdk/purchase.py" "http://127.0.0.1:$port" "$token" "$secret" "$customer" "$customer_token"
