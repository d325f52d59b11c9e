# Sourced by the benchmark scripts: PIN=1 (default) puts the relay on CPU 0 and the load generator
# on CPU 1, so the two do not take turns on one core (the tail latency at 10,000 msg/s is mostly
# such waits). PIN=0 lets the kernel place them. Sets RELAY_CPU and BENCH_CPU, command prefixes
# (empty without taskset or with fewer than two CPUs).
PIN="${PIN:-1}"
RELAY_CPU=()
BENCH_CPU=()
if [ "$PIN" = 1 ] && command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
    RELAY_CPU=(taskset -c 0)
    BENCH_CPU=(taskset -c 1)
fi
