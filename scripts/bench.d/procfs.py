"""scripts/bench.d/procfs.py — what the benchmark reads from /proc: process
trees, their CPU time (reaped children included), memory (RSS and PSS),
bytes written, CPU time by thread name, the machine's busy share, and a
sampler thread that keeps the peaks."""

import os
import threading

PAGE = os.sysconf("SC_PAGE_SIZE")
HZ = os.sysconf("SC_CLK_TCK")

def proc_stats():
    """pid -> fields of /proc/PID/stat after the command name (index 0 = state,
    1 = ppid, 11 = utime, 12 = stime, 13 = cutime, 14 = cstime)."""
    table = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                data = f.read()
        except OSError:
            continue
        table[int(name)] = data[data.rindex(b")") + 2 :].split()
    return table


def tree_pids(root, table=None):
    """root and all its descendants; `root` may be a list of roots (a server
    made of two process trees: Postfix with Dovecot's auth)."""
    table = table if table is not None else proc_stats()
    children = {}
    for pid, fields in table.items():
        children.setdefault(int(fields[1]), []).append(pid)
    out, todo = [], list(root) if isinstance(root, (list, tuple)) else [root]
    while todo:
        pid = todo.pop()
        if pid in table:
            out.append(pid)
            todo.extend(children.get(pid, []))
    return out


def tree_cpu(root):
    """CPU seconds of the tree, reaped children included."""
    table = proc_stats()
    ticks = 0
    for pid in tree_pids(root, table):
        f = table[pid]
        ticks += int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])
    return ticks / HZ


def tree_write_bytes(root):
    total = 0
    for pid in tree_pids(root):
        try:
            with open(f"/proc/{pid}/io") as f:
                for line in f:
                    if line.startswith("write_bytes:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def pid_rss(pid):
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE
    except OSError:
        return 0


def pid_pss(pid):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def tree_memory(root):
    pids = tree_pids(root)
    return sum(pid_rss(p) for p in pids), sum(pid_pss(p) for p in pids), len(pids)


def thread_cpu(pid):
    """CPU seconds by thread name of one process (its live threads)."""
    out = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat", "rb") as f:
                data = f.read()
        except OSError:
            continue
        name = data[data.index(b"(") + 1 : data.rindex(b")")].decode(errors="replace")
        fields = data[data.rindex(b")") + 2 :].split()
        out[name] = out.get(name, 0) + (int(fields[11]) + int(fields[12])) / HZ
    return out


class Sampler(threading.Thread):
    """Samples the tree's memory every `interval` s; keeps the peaks."""

    def __init__(self, root, interval=0.1):
        super().__init__(daemon=True)
        self.root, self.interval = root, interval
        self.stop_event = threading.Event()
        self.peak_rss = self.peak_pss = self.peak_procs = 0
        self.samples = 0

    def run(self):
        while not self.stop_event.is_set():
            rss, pss, n = tree_memory(self.root)
            self.peak_rss = max(self.peak_rss, rss)
            self.peak_pss = max(self.peak_pss, pss)
            self.peak_procs = max(self.peak_procs, n)
            self.samples += 1
            self.stop_event.wait(self.interval)

    def finish(self):
        self.stop_event.set()
        self.join(timeout=5)
        rss, pss, n = tree_memory(self.root)
        self.peak_rss, self.peak_pss = max(self.peak_rss, rss), max(self.peak_pss, pss)
        return self


def machine_ticks():
    """(busy, total) jiffies of all CPUs, from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields) - idle, sum(fields)


def busy_share(before, after):
    """Share of the machine's CPU time that was busy between two
    machine_ticks() readings (0..1)."""
    busy, total = after[0] - before[0], after[1] - before[1]
    return busy / total if total > 0 else None
