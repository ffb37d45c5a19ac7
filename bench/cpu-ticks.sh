# Sourced by the benchmark scripts that count CPU time in clock ticks (getconf CLK_TCK a second).
# `steal`: the host's steal ticks and all ticks, /proc/stat's first line (CPU time the hypervisor gave to other
# guests; the peers harness's `other%` cannot see it). Steal over an interval, in percent: 100 * Δsteal / Δtotal.
# `proc_ticks PID`: the user + system ticks of one process (0 once it is gone).
steal() { awk '/^cpu / {t = 0; for (i = 2; i <= NF; i++) t += $i; printf "%s %s", $9, t}' /proc/stat; }
proc_ticks() { awk '{sub(/^.*\) /, ""); print $12 + $13}' "/proc/$1/stat" 2>/dev/null || echo 0; }
