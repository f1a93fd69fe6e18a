#!/usr/bin/env bash
# The README's walk through the API, run as written, twice against one
# server and one database (a new user runs it again on the persistent
# default database): every step must answer what the README says.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/target/ci/readme-walk"
rm -rf "$out"
mkdir -p "$out"

# The fenced block that follows the README line starting `<!-- NAME:`.
readme_block() {
    python3 "$root/.ci/readme-block.py" "$root/README.md" "$1"
}

# The README's server block, on a free port instead of 8080 (which this
# machine may be using) and with its database under target/.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
server=$(readme_block walk-server)
walk=$(readme_block walk)
walk=${walk//127.0.0.1:8080/127.0.0.1:$port}
server=${server//cargo run --/exec cargo run --}

cd "$root"
export SHOP__SERVER__BIND="127.0.0.1:$port"
export DATABASE_URL="sqlite://$out/shop.db"
bash -c "$server" >"$out/server.log" 2>&1 &
server_pid=$!
trap 'kill "$server_pid" 2>/dev/null || true' EXIT
for _ in $(seq 1 600); do
    curl -sf "http://127.0.0.1:$port/health/ready" >/dev/null 2>&1 && break
    kill -0 "$server_pid" 2>/dev/null || { cat "$out/server.log" >&2; echo "the README's server did not start" >&2; exit 1; }
    sleep 0.1
done

# The README's client exports the same two variables.
eval "$(grep '^export ' <<<"$server")"

for run in 1 2; do
    log="$out/walk-$run.log"
    bash -e -o pipefail -c "$walk" >"$log" 2>&1 || {
        cat "$log" >&2
        echo "the README's walk failed on run $run" >&2
        exit 1
    }
    for expected in '"status":"paid"' 'Payment succeeded' '"code":"order_not_found"' \
        '"code":"unauthorized"' '"code":"insufficient_stock"' '"code":"validation_failed"' \
        '"status":"cancelled"'; do
        grep -qF "$expected" "$log" || {
            cat "$log" >&2
            echo "run $run of the README's walk did not answer $expected" >&2
            exit 1
        }
    done
    for unexpected in '"status":5' 'idempotency_key_reused' '"orderId":"{'; do
        if grep -qF "$unexpected" "$log"; then
            cat "$log" >&2
            echo "run $run of the README's walk answered $unexpected" >&2
            exit 1
        fi
    done
    echo "README walk, run $run: every step answered as the README says"
done
