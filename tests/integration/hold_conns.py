#!/usr/bin/env python3
# hold_conns.py API_PORT OTA_PORT N_API N_OTA DIR: holds idle connections to a station's
# REST API and OTA endpoint on 127.0.0.1 (issue 9 finding 1's attacker: no token, never a
# byte sent). Opens them (non-blocking, 5 s to connect), writes DIR/ready ("connected N
# failed K"), then every 0.2 s writes "open N closed M failed K" to DIR/state, where closed
# = the station ended it (EOF or reset). Ends when all are closed, at DIR/stop or after 90 s.
# Used by test_security_fd_budget.sh and test_udev_fd_budget.sh.
import os, resource, select, socket, sys, time
port_api, port_ota, n_api, n_ota, d = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
want = n_api + n_ota + 64
if soft < want:
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
def put(name, text):
    with open(os.path.join(d, name + ".tmp"), "w") as f:
        f.write(text + "\n")
    os.rename(os.path.join(d, name + ".tmp"), os.path.join(d, name))
pending = {}
for port, n in ((port_api, n_api), (port_ota, n_ota)):
    for _ in range(n):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        pending[s.fileno()] = s
p = select.poll()
for fd in pending:
    p.register(fd, select.POLLOUT)
socks, failed, deadline = {}, 0, time.time() + 5
while pending and time.time() < deadline:
    for fd, ev in p.poll(200):
        s = pending.pop(fd)
        p.unregister(fd)
        if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
            socks[fd] = s
        else:
            failed += 1
            s.close()
for s in pending.values():
    failed += 1
    s.close()
put("ready", "connected %d failed %d" % (len(socks), failed))
p = select.poll()
for fd in socks:
    p.register(fd, select.POLLIN)
closed, end = 0, time.time() + 90
while socks and time.time() < end and not os.path.exists(os.path.join(d, "stop")):
    for fd, ev in p.poll(200):
        s = socks[fd]
        try:
            data = s.recv(4096)  # a 503 comes before the end
        except OSError:
            data = b""
        if not data:
            p.unregister(fd)
            s.close()
            del socks[fd]
            closed += 1
    put("state", "open %d closed %d failed %d" % (len(socks), closed, failed))
put("state", "open %d closed %d failed %d" % (len(socks), closed, failed))
