# Guest side of bench/qemu_cpu.py: each argument is a command run once cold (after an
# untimed cold run), with /data appended, between MARK lines.
drop="sync; echo 3 > /proc/sys/vm/drop_caches"
for cmd in "$@"; do
  sh -c "$drop"; eval "$cmd /data" >/dev/null; sh -c "$drop"; sleep 2
  echo "MARK start $cmd"
  eval "$cmd /data" >/dev/null
  echo "MARK end $cmd"; sleep 2
done
