#!/usr/bin/env python3
"""Host CPU used by QEMU while guest commands run (README: why the VM numbers stop).

Usage: bench/qemu_cpu.py RUN-IN-VM-COMMAND...
The command's guest side prints `MARK start NAME` and `MARK end NAME` around each
measured command (bench/cold_marks.sh does). Every 50 ms this samples utime+stime of
every thread of every qemu process; afterwards it prints, per marked command, the wall
time and the CPU of the busiest threads (the vCPU threads first, then the main loop).
"""
import glob
import subprocess
import sys
import threading
import time

samples = []  # (host time, {tid: cpu ticks})
done = threading.Event()


def sample():
    while not done.is_set():
        ticks = {}
        for proc in glob.glob('/proc/[0-9]*'):
            try:
                with open(proc + '/comm') as f:
                    if not f.read().startswith('qemu'):
                        continue
                for task in glob.glob(proc + '/task/*'):
                    with open(task + '/stat') as f:
                        fields = f.read().rsplit(')', 1)[1].split()
                    ticks[task.rsplit('/', 1)[1]] = int(fields[11]) + int(fields[12])
            except OSError:
                continue  # a process or thread that ended meanwhile
        samples.append((time.time(), ticks))
        time.sleep(0.05)


def nearest(t):
    return min(samples, key=lambda s: abs(s[0] - t))


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    marks = []
    with subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE, text=True) as child:
        for line in child.stdout:
            if line.startswith('MARK '):
                marks.append((time.time(), line.split(None, 2)[1:]))
            sys.stdout.write(line)
    done.set()
    sampler.join()
    hz = 100
    starts = {}
    for t, (kind, name) in marks:
        name = name.strip()
        if kind == 'start':
            starts[name] = t
        elif name in starts:
            (t0, a), (t1, b) = nearest(starts.pop(name)), nearest(t)
            used = sorted(((v - a.get(k, 0)) / hz for k, v in b.items()), reverse=True)
            print('%-45s wall %.2f s, qemu cpu %.2f s (busiest threads: %s)' % (
                name, t1 - t0, sum(used), ', '.join('%.2f' % u for u in used[:4])))
    sys.exit(child.returncode)


main()
