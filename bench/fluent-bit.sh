#!/usr/bin/env bash
# The built-in rule's Fluent Bit filter inside Fluent Bit: a pipeline of `tail` (JSON
# parser) into `file`, with and without the `ssm_alerts` filter, over an NDJSON corpus
# (`rule-harness bench` leaves its mix, `mix-...ndjson`, in the system's temporary
# directory; `tail` cannot read the gzip'd files beside it). Prints each run's wall and
# CPU seconds, then checks that the filter raised the alerts `rule-harness run` raises.
#
#   bench/fluent-bit.sh FLUENT_BIT_BINARY CORPUS.ndjson [RUNS]
#
# Needs GNU time (/usr/bin/time) and python3.
# Fluent Bit is not a dependency of this project: build it from its sources with
# `cmake -DFLB_WASM=On -DFLB_MINIMAL=On -DFLB_IN_TAIL=On -DFLB_FILTER_WASM=On
# -DFLB_OUT_FILE=On` (it needs cmake, flex, bison, libyaml-dev and libssl-dev).
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 FLUENT_BIT_BINARY CORPUS.ndjson [RUNS]" >&2
  exit 2
fi
for tool in /usr/bin/time python3; do
  command -v "$tool" > /dev/null || { echo "$0 needs $tool" >&2; exit 2; }
done
fluent_bit=$(realpath "$1")
corpus=$(realpath "$2")
runs=${3:-3}
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/out" "$work/granted"
printf '[PARSER]\n    Name   json\n    Format json\n' > "$work/parsers.conf"
cargo run -q --release -- export --for fluent-bit "$work/filter.wasm"

config() { # NAME [FILTER]: a pipeline writing to out/NAME
  cat <<CONF
[SERVICE]
    Flush        1
    Grace        2
    Log_Level    error
    Parsers_File $work/parsers.conf
[INPUT]
    Name              tail
    Path              $corpus
    Parser            json
    Read_from_Head    On
    Exit_On_Eof       On
    Buffer_Chunk_Size 1M
    Buffer_Max_Size   16M
    Tag               cloudtrail
$2
[OUTPUT]
    Name   file
    Match  cloudtrail
    Path   $work/out
    File   $1
    Format plain
CONF
}
config without "" > "$work/without.conf"
config with "[FILTER]
    Name             wasm
    Match            cloudtrail
    Event_Format     json
    WASM_Path        $work/filter.wasm
    Function_Name    ssm_alerts
    Accessible_Paths $work/granted
    WASM_Stack_Size  1M
    WASM_Heap_Size   1M" > "$work/with.conf"

for _ in $(seq "$runs"); do
  for name in without with; do
    rm -f "$work/out/$name"
    if ! /usr/bin/time -o "$work/time" -f "$name: %e s wall, %U s user, %S s system" \
      "$fluent_bit" -c "$work/$name.conf" > "$work/log" 2>&1; then
      cat "$work/log" >&2
      exit 1
    fi
    cat "$work/time"
  done
done
filter=$(python3 -c 'import json,sys; print(sum(len(json.loads(l).get("alerts", [])) for l in sys.stdin if l.strip()))' < "$work/out/with")
cargo run -q --release -- run --no-progress --state memory "$corpus" > "$work/alerts" 2> "$work/log" ||
  { cat "$work/log" >&2; exit 1; }
harness=$(wc -l < "$work/alerts")
echo "alerts: $filter from the filter, $harness from rule-harness run"
[ "$filter" -eq "$harness" ] || { echo "the filter's alerts differ from the harness's" >&2; exit 1; }
