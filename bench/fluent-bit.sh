#!/usr/bin/env bash
# The built-in rule's Fluent Bit filter inside Fluent Bit: a pipeline of `tail` (JSON
# parser) into `file`, with and without the `ssm_alerts` filter, over an NDJSON corpus
# (`rule-harness bench` leaves its mix in the system's temporary directory). Prints each
# run's wall and CPU seconds, then the filter's alerts next to `rule-harness run`'s.
#
#   bench/fluent-bit.sh FLUENT_BIT_BINARY CORPUS.ndjson [RUNS]
#
# Fluent Bit is not a dependency of this project: build it from its sources with
# `cmake -DFLB_WASM=On -DFLB_MINIMAL=On -DFLB_IN_TAIL=On -DFLB_FILTER_WASM=On
# -DFLB_OUT_FILE=On` (it needs cmake, flex, bison, libyaml-dev and libssl-dev).
set -euo pipefail
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

for run in $(seq "$runs"); do
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
count() { python3 -c 'import json,sys; print(sum(len(json.loads(l).get("alerts", [])) for l in sys.stdin if l.strip()))'; }
echo "alerts from the filter: $(count < "$work/out/with")"
echo "alerts from rule-harness run: $(cargo run -q --release -- run --no-progress --state memory "$corpus" 2>/dev/null | wc -l)"
