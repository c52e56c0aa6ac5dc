"""Round trip of one line through a job's standard input and output in a microvm.

Usage: python3 bench/stdin_rtt.py [RUN_IN_VM]   (default target/debug/run-in-vm)
Starts `run-in-vm --no-src cat`, sends a line, waits for it to come back, 50 times,
and prints the mean: the latency a program driving a job line by line sees.
"""
import subprocess
import sys
import time

runner = sys.argv[1] if len(sys.argv) > 1 else "target/debug/run-in-vm"
job = subprocess.Popen([runner, "--no-src", "cat"], stdin=subprocess.PIPE,
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
# The first line waits for the boot: not timed.
job.stdin.write(b"boot\n")
job.stdin.flush()
job.stdout.readline()
rounds = 50
start = time.monotonic()
for i in range(rounds):
    line = b"line %d\n" % i
    job.stdin.write(line)
    job.stdin.flush()
    back = job.stdout.readline()
    if back != line:
        sys.exit(f"sent {line!r}, got {back!r}")
mean = (time.monotonic() - start) / rounds
job.stdin.close()
job.wait()
print(f"round trip {mean * 1000:.1f} ms (mean of {rounds})")
