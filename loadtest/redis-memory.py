#!/usr/bin/env python3
"""What crier's cluster-wide presence and user state cost in Redis (docs/SCALING.md).

Starts a throwaway redis-server on a free loopback port, runs crier's own Lua scripts (read
from src/cluster/scripts.rs) through redis-cli as a node would, and prints MEMORY USAGE of the
keys they write. Needs redis-server and redis-cli on PATH; writes nothing to disk.

    python3 loadtest/redis-memory.py
"""

import os
import re
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = open(os.path.join(ROOT, "src/cluster/scripts.rs")).read()


def lua(name):
    """A script's Lua, with the shared `diffs!` prelude where it uses it."""
    prelude = re.search(r'macro_rules! diffs \{\s*\(\) => \{\s*r#"(.*?)"#', SCRIPTS, re.S)
    m = re.search(rf'pub const {name}: &str = (concat!\(\s*diffs!\(\),\s*)?r"(.*?)"', SCRIPTS, re.S)
    body = m.group(2)
    return (prelude.group(1) + body) if m.group(1) else body


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    port = str(free_port())
    redis = subprocess.Popen(
        ["redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            if subprocess.run(["redis-cli", "-p", port, "PING"], capture_output=True).returncode == 0:
                break
            time.sleep(0.05)
        cli = lambda *args, **kw: subprocess.run(["redis-cli", "-p", port, *args], capture_output=True, text=True, **kw).stdout.strip()
        usage = lambda key: cli("MEMORY", "USAGE", key, "SAMPLES", "0")
        print(cli("INFO", "server").splitlines()[1])

        node = "abcdef012345"
        batch = cli("SCRIPT", "LOAD", lua("PRESENCE_BATCH"))
        for channel, members, info in [("chat:small", 100, False), ("chat:big", 10000, False), ("chat:info", 10000, True)]:
            lines = []
            for start in range(0, members, 256):
                args = [node]
                for i in range(start, min(start + 256, members)):
                    extra = ',"info":{"name":"User Number %d"}' % i if info else ""
                    member = '{"client":"c%d","node":"%s","user":"user%05d"%s}' % (i + 1, node, i, extra)
                    args += ["+", channel, f"c{i + 1}", f"user{i:05d}", member]
                lines.append(" ".join(["EVALSHA", batch, "0"] + [quote(a) for a in args]))
            subprocess.run(["redis-cli", "-p", port], input="\n".join(lines) + "\n", text=True, stdout=subprocess.DEVNULL)
            print(f"{channel}: {members} members{' with info' if info else ''}: "
                  f"crier:pres {usage('crier:pres:' + channel)} B, crier:pusers {usage('crier:pusers:' + channel)} B")
        print(f"crier:node:{node}:members (20,100 members): {usage(f'crier:node:{node}:members')} B")

        up = cli("SCRIPT", "LOAD", lua("USER_UP"))
        lines = [f"EVALSHA {up} 0 {node} user{i:05d}" for i in range(10000)]
        lines += [f"EVALSHA {up} 0 123456abcdef user{i:05d}" for i in range(5000)]
        subprocess.run(["redis-cli", "-p", port], input="\n".join(lines) + "\n", text=True, stdout=subprocess.DEVNULL)
        print(f"crier:user (one node): {usage('crier:user:user09999')} B, (two nodes): {usage('crier:user:user00001')} B")
        print(f"crier:node:{node}:users (10,000 users): {usage(f'crier:node:{node}:users')} B")
    finally:
        redis.terminate()
        redis.wait()


def quote(arg):
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


if __name__ == "__main__":
    sys.exit(main())
