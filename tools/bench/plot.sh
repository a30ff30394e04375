#!/usr/bin/env bash
# Draws refbench's charts from the CSV files of a run (refbench --csv DIR) with gnuplot.
#
#   tools/bench/plot.sh /tmp/refbench-csv              # writes tools/bench/charts/*.png
#   tools/bench/plot.sh /tmp/refbench-csv /tmp/charts  # or somewhere else
#
# Charts (small PNGs, committed with BENCHMARKS.md):
#   throughput.png  bytes per second vs object size: put vs memcpy, handoff (produced in place and
#                   copied in) vs Redis / by value, raw sockets
#   latency.png     time vs object size: view vs echo, put, handoff
#   small_ops.png   put+get pairs per second vs value size, refstore vs Redis
#   scale.png       daemon bytes per live object vs live objects
#   xhost_pull.png  cross-host pull throughput vs value size beside raw TCP on the same link, from
#                   CSV_DIR/xhost_pull.csv and/or CSV_DIR/xhost-{loopback,netns,shaped}/ (the CSVs
#                   of `refbench --only xhost --xhost-link MODE --csv CSV_DIR/xhost-MODE`), one
#                   colour per link
set -euo pipefail

csv=${1:?usage: plot.sh CSV_DIR [OUT_DIR]}
out=${2:-$(cd "$(dirname "$0")" && pwd)/charts}
mkdir -p "$out"
command -v gnuplot >/dev/null || { echo "plot.sh: gnuplot is missing (tools/setup)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Column number of header NAME in FILE (fails if there is none).
col() {
  local n
  n=$(head -1 "$1" | tr ',' '\n' | grep -nx "$2" | cut -d: -f1)
  [[ -n $n ]] || { echo "plot.sh: $1 has no column $2 (CSV from another refbench version?)" >&2; return 1; }
  echo "$n"
}

# extract FILE OUT X Y [COLUMN=VALUE ...]: columns X and Y of the rows of FILE that pass every
# filter, into OUT (space-separated, for gnuplot).
extract() {
  local file=$1 target=$2 x=$3 y=$4
  shift 4
  local conditions="1" xc yc fc
  for filter in "$@"; do
    fc=$(col "$file" "${filter%%=*}") || exit 1
    conditions="$conditions && \$$fc == ${filter#*=}"
  done
  xc=$(col "$file" "$x") || exit 1
  yc=$(col "$file" "$y") || exit 1
  awk -F, "NR > 1 && $conditions { print \$$xc, \$$yc }" "$file" >"$target"
}

# Size axis in bytes, labelled with binary units at every power of 4.
size_axis='set logscale x 2
set xtics nomirror ("64B" 64, "256B" 256, "1KiB" 1024, "4KiB" 4096, "16KiB" 16384, "64KiB" 65536, "256KiB" 262144, "1MiB" 1048576, "4MiB" 4194304, "16MiB" 16777216, "64MiB" 67108864, "256MiB" 268435456, "1GiB" 1073741824)
set format y "%g"
set offsets graph 0.03, graph 0.03, 0, 0
set grid xtics ytics lc rgb "#dddddd"
set key top left box opaque
set border 3
set ytics nomirror'
terminal='set terminal pngcairo size 860,520 font "sans,10"'

if [[ -f $csv/put_large.csv && -f $csv/transfer.csv ]]; then
  extract "$csv/put_large.csv" "$work/put" size_bytes put_gbps_median
  extract "$csv/put_large.csv" "$work/memcpy" size_bytes memcpy_gbps_median
  extract "$csv/transfer.csv" "$work/unix" size_bytes unix_gbps_median
  extract "$csv/transfer.csv" "$work/tcp" size_bytes tcp_gbps_median
  for v in refstore refstore_in_place redis by_value; do
    c=$(col "$csv/handoff.csv" "${v}_ms_median") || exit 1
    awk -F, -v c="$c" 'NR > 1 { print $1, $1 / ($c / 1000) / 1e9 }' "$csv/handoff.csv" \
      >"$work/handoff_$v"
  done
  gnuplot <<EOF
$terminal
set output "$out/throughput.png"
$size_axis
set logscale y 10
set ylabel "GB/s (log)"
set xlabel "object size"
set yrange [0.001:100]
set key bottom right box opaque
set title "Throughput by object size (same run; higher is better)"
plot "$work/memcpy" using 1:2 with linespoints lw 2 lc rgb "#555555" title "memcpy (warm buffers)", \
     "$work/put" using 1:2 with linespoints lw 2 lc rgb "#1f77b4" title "refstore put (create + write + seal)", \
     "$work/handoff_refstore_in_place" using 1:2 with linespoints lw 2 lc rgb "#2ca02c" title "refstore handoff to a 2nd process, produced in place", \
     "$work/handoff_refstore" using 1:2 with linespoints lc rgb "#2ca02c" dt 2 title "refstore handoff, copied in from private memory", \
     "$work/handoff_redis" using 1:2 with linespoints lc rgb "#d62728" title "Redis SET/GET handoff", \
     "$work/handoff_by_value" using 1:2 with linespoints lc rgb "#9467bd" title "by-value Cap'n Proto RPC handoff", \
     "$work/unix" using 1:2 with lines dt 2 lc rgb "#ff7f0e" title "raw Unix socket", \
     "$work/tcp" using 1:2 with lines dt 3 lc rgb "#8c564b" title "raw loopback TCP"
EOF
fi

if [[ -f $csv/view.csv ]]; then
  extract "$csv/view.csv" "$work/view" size_bytes view_us_median
  extract "$csv/view.csv" "$work/echo" size_bytes echo_us_median
  extract "$csv/put_large.csv" "$work/put_us" size_bytes put_ms_median
  for v in refstore refstore_in_place redis by_value; do
    c=$(col "$csv/handoff.csv" "${v}_ms_median") || exit 1
    awk -F, -v c="$c" 'NR > 1 { print $1, $c * 1000 }' "$csv/handoff.csv" >"$work/handoff_us_$v"
  done
  gnuplot <<EOF
$terminal
set output "$out/latency.png"
$size_axis
set logscale y 10
set ylabel "microseconds (log)"
set xlabel "object size"
set title "Latency by object size (same run; lower is better)"
plot "$work/view" using 1:2 with linespoints lw 2 lc rgb "#2ca02c" title "refstore view() (zero-copy, first byte)", \
     "$work/echo" using 1:2 with lines dt 2 lw 2 lc rgb "#555555" title "bare Cap'n Proto echo round trip", \
     "$work/put_us" using 1:(\$2 * 1000) with linespoints lc rgb "#1f77b4" title "refstore put", \
     "$work/handoff_us_refstore_in_place" using 1:2 with linespoints lw 2 lc rgb "#17becf" title "refstore handoff, produced in place", \
     "$work/handoff_us_refstore" using 1:2 with linespoints lc rgb "#17becf" dt 2 title "refstore handoff, copied in", \
     "$work/handoff_us_redis" using 1:2 with linespoints lc rgb "#d62728" title "Redis handoff", \
     "$work/handoff_us_by_value" using 1:2 with linespoints lc rgb "#9467bd" title "by-value RPC handoff"
EOF
fi

if [[ -f $csv/small_ops.csv ]]; then
  f=$csv/small_ops.csv
  for clients in 1 8; do
    for depth in 1 16; do
      for system in refstore refstore_read refstore_batched redis; do
        extract "$f" "$work/${system}_${clients}_${depth}" size_bytes ${system}_ops_median \
          clients=$clients depth=$depth
      done
    done
  done
  gnuplot <<EOF
$terminal
set output "$out/small_ops.png"
$size_axis
set logscale y 10
set ylabel "put+get pairs per second (log)"
set xlabel "value size"
set key outside right top
set title "Small objects (same run; higher is better)"
plot "$work/refstore_1_1" using 1:2 with linespoints lw 2 lc rgb "#2ca02c" title "refstore view, 1 client", \
     "$work/refstore_read_1_1" using 1:2 with linespoints lc rgb "#2ca02c" dt 3 title "refstore read, 1 client", \
     "$work/redis_1_1" using 1:2 with linespoints lw 2 lc rgb "#d62728" title "Redis, 1 client", \
     "$work/refstore_1_16" using 1:2 with linespoints lw 2 lc rgb "#1f77b4" title "refstore view, 1 client, depth 16", \
     "$work/redis_1_16" using 1:2 with linespoints lw 2 lc rgb "#ff7f0e" title "Redis, 1 client, depth 16", \
     "$work/refstore_8_1" using 1:2 with linespoints lc rgb "#2ca02c" dt 2 title "refstore view, 8 clients", \
     "$work/redis_8_1" using 1:2 with linespoints lc rgb "#d62728" dt 2 title "Redis, 8 clients", \
     "$work/refstore_8_16" using 1:2 with linespoints lc rgb "#1f77b4" dt 2 title "refstore view, 8 clients, depth 16", \
     "$work/refstore_batched_1_16" using 1:2 with linespoints lw 2 lc rgb "#9467bd" title "refstore putMany+readMany of 16, 1 client", \
     "$work/refstore_batched_8_16" using 1:2 with linespoints lc rgb "#9467bd" dt 2 title "refstore putMany+readMany of 16, 8 clients", \
     "$work/redis_8_16" using 1:2 with linespoints lc rgb "#ff7f0e" dt 2 title "Redis, 8 clients, depth 16"
EOF
fi

if [[ -f $csv/scale.csv ]]; then
  extract "$csv/scale.csv" "$work/scale" live_objects bytes_per_object
  extract "$csv/scale.csv" "$work/scale_anon" live_objects anon_bytes_per_object
  gnuplot <<EOF
$terminal
set output "$out/scale.png"
set logscale x 10
set logscale y 2
set grid xtics ytics lc rgb "#dddddd"
set border 3
set xtics nomirror
set ytics nomirror
set xlabel "live objects"
set yrange [128:*]
set ylabel "daemon bytes per live object"
set title "Daemon memory per object (lower is better; target 256)"
plot "$work/scale" using 1:2 with linespoints lw 2 lc rgb "#2ca02c" title "VmRSS growth / objects", \
     "$work/scale_anon" using 1:2 with linespoints lc rgb "#1f77b4" title "RssAnon growth / objects (heap only)", \
     256 with lines dt 2 lc rgb "#d62728" title "target"
EOF
fi

xhost_series=()
for mode in "" loopback netns shaped; do
  dir=$csv${mode:+/xhost-$mode}
  [[ -f $dir/xhost_pull.csv ]] || continue
  extract "$dir/xhost_pull.csv" "$work/xpull_${mode:-run}" size_bytes pull_gbps
  extract "$dir/xhost_pull.csv" "$work/xraw_${mode:-run}" size_bytes raw_tcp_gbps
  xhost_series+=("${mode:-run}:${mode:-this run}")
done
if ((${#xhost_series[@]} > 0)); then
  colours=("#2ca02c" "#1f77b4" "#d62728" "#9467bd")
  plots="" i=0
  for series in "${xhost_series[@]}"; do
    key=${series%%:*} name=${series#*:} c=${colours[$i]}
    plots+="\"$work/xpull_$key\" using 1:2 with linespoints lw 2 lc rgb \"$c\" title \"refstore pull, $name\", "
    plots+="\"$work/xraw_$key\" using 1:2 with linespoints dt 2 lc rgb \"$c\" title \"raw TCP, $name\", "
    i=$((i + 1))
  done
  [[ -d $csv/xhost-shaped ]] && plots+="1.25 with lines dt 3 lc rgb \"#999999\" title \"10 Gbit/s (the shaped link's cap)\", "
  gnuplot <<EOF
$terminal
set output "$out/xhost_pull.png"
$size_axis
set logscale y 10
set ylabel "GB/s (log)"
set xlabel "value size"
set yrange [0.05:30]
set key top right box opaque
set title "Cross-host pull (first view on host 1 of host 0's value) vs raw TCP, same link"
plot ${plots%, }
EOF
fi

ls -l "$out"/*.png
