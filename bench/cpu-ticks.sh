# Sourced by the benchmark scripts that record the host's steal time (CPU time the hypervisor gave to other
# guests; the peers harness's `other%` cannot see it): `steal` prints the steal ticks and the total ticks of
# /proc/stat's first line. Steal over an interval, in percent: 100 * Δsteal / Δtotal.
steal() { awk '/^cpu / {t = 0; for (i = 2; i <= NF; i++) t += $i; printf "%s %s", $9, t}' /proc/stat; }
