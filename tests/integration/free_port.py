#!/usr/bin/env python3
"""free_port.py: print an unused TCP port for a test's server.

Picked at random below the kernel's ephemeral range (/proc/sys/net/ipv4/ip_local_port_range),
so that no outgoing connection of a test running alongside (some hold hundreds) takes it
between the pick and the server's bind; checked free on 0.0.0.0. Falls back to a port the
kernel picks."""
import random
import socket

try:
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        low = int(f.read().split()[0])
except (OSError, ValueError, IndexError):
    low = 32768
top = max(low, 12000)
for _ in range(200):
    port = random.randrange(top - 10000, top)
    s = socket.socket()
    try:
        s.bind(("0.0.0.0", port))
    except OSError:
        continue
    finally:
        s.close()
    print(port)
    break
else:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    print(s.getsockname()[1])
    s.close()
