#!/usr/bin/env bash
# The built-in rule's Fluent Bit filter inside Fluent Bit: a pipeline of `tail` (JSON
# parser) into `file`, with and without the `ssm_alerts` filter, over an NDJSON corpus
# (`rule-harness bench` leaves its corpora in the system's temporary directory:
# `mix-...ndjson`, many services and a little SSM, and `ssm-heavy-...ndjson`, mostly
# session starts; `tail` cannot read the gzip'd files beside them).
#
#   bench/fluent-bit.sh FLUENT_BIT_BINARY CORPUS.ndjson [RUNS]
#
# Prints each run's wall and CPU seconds; then the medians, the pipeline's time with the
# filter over its time without it, the CPU the filter adds per record and per session
# start (the corpus's `StartSession` records: on the SSM-heavy corpus nearly all of the
# filter's work); and checks that the filter raised exactly the alerts `rule-harness run`
# raises. With WAMRC set to a `wamrc` (WAMR's ahead-of-time compiler, of the WAMR release
# Fluent Bit bundles), the filter is also compiled ahead of time and measured the same
# way (README: "Inside Fluent Bit").
#
# Needs GNU time (/usr/bin/time) and python3.
# Fluent Bit is not a dependency of this project: build it from its sources with
# `cmake -DFLB_RELEASE=On -DFLB_WASM=On -DFLB_MINIMAL=On -DFLB_IN_TAIL=On
# -DFLB_FILTER_WASM=On -DFLB_OUT_FILE=On -DFLB_KAFKA=Off`. FLB_RELEASE builds it
# optimized, as Fluent Bit's packages are; without it, Fluent Bit builds for debugging,
# unoptimized, and its WAMR interpreter runs more than twice as slow. It needs cmake,
# flex, bison, libyaml-dev, libssl-dev and, for FLB_SQLDB, libsqlite3-dev with
# -DFLB_PREFER_SYSTEM_LIB_SQLITE=On; add -DFLB_USE_SIMDUTF=No where gcc fails on
# simdutf's AVX2 code. `wamrc` builds from the WAMR sources Fluent Bit bundles
# (lib/wasm-micro-runtime-*/wamr-compiler) with
# `cmake -DWAMR_BUILD_WITH_CUSTOM_LLVM=1 -DLLVM_DIR=/usr/lib/llvm-16/lib/cmake/llvm`.
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
pipelines="without with"
if [ -n "${WAMRC:-}" ]; then
  # WAMR in Fluent Bit runs without SIMD: the compiled module must not use it.
  "$WAMRC" --opt-level=3 --disable-simd -o "$work/filter.aot" "$work/filter.wasm" > "$work/log" 2>&1 ||
    { cat "$work/log" >&2; exit 1; }
  pipelines="$pipelines with-aot"
fi

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
filter() { # MODULE: the filter section
  echo "[FILTER]
    Name             wasm
    Match            cloudtrail
    Event_Format     json
    WASM_Path        $1
    Function_Name    ssm_alerts
    Accessible_Paths $work/granted
    WASM_Stack_Size  1M
    WASM_Heap_Size   1M"
}
config without "" > "$work/without.conf"
config with "$(filter "$work/filter.wasm")" > "$work/with.conf"
config with-aot "$(filter "$work/filter.aot")" > "$work/with-aot.conf"

for _ in $(seq "$runs"); do
  for name in $pipelines; do
    rm -f "$work/out/$name"
    if ! /usr/bin/time -o "$work/time" -f "%e %U %S" \
      "$fluent_bit" -c "$work/$name.conf" > "$work/log" 2>&1; then
      cat "$work/log" >&2
      exit 1
    fi
    read -r wall user system < "$work/time"
    echo "$name $wall $user $system" >> "$work/times"
    echo "$name: $wall s wall, $user s user, $system s system"
  done
done

records=$(wc -l < "$corpus")
starts=$(grep -c '"StartSession"' "$corpus" || true)
python3 - "$work/times" "$records" "$starts" <<'PY'
import statistics, sys
times, records, starts = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
runs = {}
for line in open(times):
    name, wall, user, system = line.split()
    runs.setdefault(name, []).append((float(wall), float(user) + float(system)))
median = {name: (statistics.median(w for w, _ in r), statistics.median(c for _, c in r))
          for name, r in runs.items()}
base_wall, base_cpu = median["without"]
print(f"medians of {len(runs['without'])} runs, {records} records, {starts} session starts:")
for name, (wall, cpu) in median.items():
    line = f"  {name}: {wall:.2f} s wall, {cpu:.2f} s CPU"
    if name != "without":
        added = cpu - base_cpu
        line += (f"; {wall / base_wall:.2f}x the wall time and {cpu / base_cpu:.2f}x the CPU"
                 f" without the filter; the filter adds {added * 1e6 / records:.1f} µs CPU a record")
        if starts:
            line += f", {added * 1e6 / starts:.0f} µs a session start"
    print(line)
PY

for name in $pipelines; do
  [ "$name" = without ] && continue
  count=$(python3 -c 'import json,sys; print(sum(len(json.loads(l).get("alerts", [])) for l in sys.stdin if l.strip()))' < "$work/out/$name")
  echo "$name" "$count" >> "$work/alert-counts"
done
cargo run -q --release -- run --no-progress --state memory "$corpus" > "$work/alerts" 2> "$work/log" ||
  { cat "$work/log" >&2; exit 1; }
harness=$(wc -l < "$work/alerts")
while read -r name count; do
  echo "alerts: $count from the filter ($name), $harness from rule-harness run"
  [ "$count" -eq "$harness" ] || { echo "the filter's alerts differ from the harness's" >&2; exit 1; }
done < "$work/alert-counts"
