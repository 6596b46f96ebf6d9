#!/usr/bin/env python3
"""Issue 14, cases 1-10: what the real service answers, gathered with curl on 127.0.0.1.

Run from the repository root after `cargo build -p beacon-service`, as root (case 10 mounts a
1 MiB tmpfs; case 1 uses prlimit): `python3 services/service/tests/tools/hostile_cases.py`.
Prints `case | request | status and first line of the body`; docs/hostile-network.md is its
output. BEACON_SERVICE overrides the binary.
"""
import tempfile, json, os, shutil, signal, socket, subprocess, sys, time
BIN = os.environ.get("BEACON_SERVICE", "target/debug/beacon-service")
WORK = tempfile.mkdtemp(prefix="beacon-cases-")
def start(db, *extra, prefix=()):
    p = subprocess.Popen([*prefix, BIN, "--listen", "127.0.0.1:0", "--db", db, *extra],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "RUST_LOG": "warn"})
    line = p.stdout.readline().decode()
    return p, line.strip().rsplit(" ", 1)[-1]
def curl(*args):
    out = subprocess.run(["curl", "-s", "-o", f"{WORK}/body", "-w", "%{http_code}", *args], capture_output=True, text=True)
    body = open(f"{WORK}/body", "rb").read().decode(errors="replace")
    first = body.splitlines()[0] if body else "(empty body)"
    return f"{out.stdout} {first[:200]}"
def reg(B, auth=None):
    a = ["-H", f"authorization: Bearer {auth}"] if auth else []
    return curl("-X", "POST", f"{B}/api/v1/devices", "-H", "content-type: application/json", *a, "-d", '{"id":7,"token":"tok-seven"}')
def fresh(name):
    d = f"{WORK}/{name}"; shutil.rmtree(d, ignore_errors=True); os.makedirs(d); return d
def stop(p):
    p.send_signal(signal.SIGTERM); 
    try: return p.wait(30)
    except Exception: p.kill(); return "killed"
R = []
def out(case, what, ans): R.append((case, what, ans)); print(f"{case} | {what} | {ans}", flush=True)

# 1
d = fresh("c1"); p, B = start(f"{d}/t.db", "--header-read-timeout-secs", "2")
host, port = B[7:].split(":")
s = socket.create_connection((host, int(port))); s.sendall(b"GET / HTTP/1.1\r\n"); t = time.time(); s.settimeout(30)
data = s.recv(4096); out(1, "`GET / HTTP/1.1\\r\\n` then nothing (--header-read-timeout-secs 2)", f"connection closed by the service after {time.time()-t:.1f} s, {len(data)} bytes sent back")
s = socket.create_connection((host, int(port))); s.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n"); s.settimeout(30)
first = s.recv(4096).decode().splitlines()[0]; t = time.time()
while s.recv(4096): pass
out(1, "keep-alive connection idle after one request", f"{first}, then closed after {time.time()-t:.1f} s idle")
stop(p)
d = fresh("c1b"); p, B = start(f"{d}/t.db", "--header-read-timeout-secs", "2", prefix=("prlimit", "--nofile=128", "--"))
host, port = B[7:].split(":"); socks = []
for _ in range(150):
    s = socket.create_connection((host, int(port))); s.sendall(b"GET / HTTP/1.1\r\n"); socks.append(s)
out(1, "150 slowloris sockets under `prlimit --nofile=128`, then GET /healthz", curl("-m", "30", f"{B}/healthz"))
for s in socks: s.close()
stop(p)
# 2
d = fresh("c2"); r = subprocess.run([BIN, "--listen", "127.0.0.1:0", "--db", f"{d}/t.db", "--auto-register", "--provisioning-token", "prov"], capture_output=True, text=True, timeout=30)
out(2, "start with --auto-register --provisioning-token prov", f"exit {r.returncode}: {r.stderr.strip().splitlines()[-1][:200]}")
p, B = start(f"{d}/t.db", "--provisioning-token", "prov")
out(2, "POST /api/v1/devices/55/readings, Bearer attacker, {\"readings\":[]} (--provisioning-token)", curl("-X", "POST", f"{B}/api/v1/devices/55/readings", "-H", "authorization: Bearer attacker", "-H", "content-type: application/json", "-d", '{"readings":[]}'))
out(2, "then the operator registers 55 with the provisioning token", curl("-X", "POST", f"{B}/api/v1/devices", "-H", "authorization: Bearer prov", "-H", "content-type: application/json", "-d", '{"id":55,"token":"owner"}'))
stop(p)
d = fresh("c2b"); p, B = start(f"{d}/t.db", "--auto-register")
out(2, "--auto-register alone: POST .../56/readings, Bearer attacker, invalid body", curl("-X", "POST", f"{B}/api/v1/devices/56/readings", "-H", "authorization: Bearer attacker", "-H", "content-type: application/json", "-d", '{"readings":[{"seq":"x"}]}'))
out(2, "then GET /api/v1/devices", curl(f"{B}/api/v1/devices"))
stop(p)
# 3
d = fresh("c3"); os.makedirs(f"{d}/x"); p, B = start(f"{d}/x/x.db"); reg(B)
shutil.rmtree(f"{d}/x")
out(3, "`rm -rf` the db dir, then GET /readyz", curl(f"{B}/readyz"))
try: rc = p.wait(30)
except Exception: rc = "still running"
out(3, "then the process", f"exits by itself with code {rc}: {p.stderr.read().decode().strip().splitlines()[-1][:160]}")
d = fresh("c3b"); os.makedirs(f"{d}/x"); p, B = start(f"{d}/x/x.db"); reg(B)
shutil.rmtree(f"{d}/x")
one = json.dumps({"readings": [{"seq": 1, "uptime_ms": 1, "values": []}]})
out(3, "`rm -rf` the db dir, then ingest", curl("-X", "POST", f"{B}/api/v1/devices/7/readings", "-H", "authorization: Bearer tok-seven", "-H", "content-type: application/json", "-d", one))
try: rc = p.wait(30)
except Exception: rc = "still running"
out(3, "then the process", f"exits by itself with code {rc}: {p.stderr.read().decode().strip().splitlines()[-1][:160]}")
# 4
d = fresh("c4"); p, B = start(f"{d}/t.db"); reg(B)
open(f"{WORK}/4mib", "wb").write(b" " * (4 * 1024 * 1024 - 1))
out(4, "tokenless 4 MiB ingest", curl("-X", "POST", f"{B}/api/v1/devices/7/readings", "-H", "content-type: application/json", "--data-binary", f"@{WORK}/4mib"))
stop(p)
d = fresh("c4b"); p, B = start(f"{d}/t.db", "--max-unauthenticated-per-ip", "2"); reg(B)
host, port = B[7:].split(":"); slow = []
for _ in range(2):
    s = socket.create_connection((host, int(port)))
    s.sendall(b"POST /api/v1/devices HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n"); slow.append(s)
time.sleep(0.5)
out(4, "--max-unauthenticated-per-ip 2, two open registrations waiting for their bodies, then GET /api/v1/latest", curl("-i", f"{B}/api/v1/latest").split(chr(10))[0] + " | " + [l for l in open(f"{WORK}/body").read().splitlines() if l.lower().startswith("retry-after")][0].strip() + " | " + open(f"{WORK}/body").read().strip().splitlines()[-1][:170])
out(4, "meanwhile device 7 ingests with its token", curl("-X", "POST", f"{B}/api/v1/devices/7/readings", "-H", "authorization: Bearer tok-seven", "-H", "content-type: application/json", "-d", json.dumps({"readings": [{"seq": 1, "uptime_ms": 1, "values": []}]})))
for s in slow: s.close()
stop(p)
# 5
d = fresh("c5"); p, B = start(f"{d}/t.db", "--provisioning-token", "prov"); reg(B, "prov")
out(5, "GET /api/v1/devices without a token (--provisioning-token set)", curl(f"{B}/api/v1/devices"))
out(5, "GET /api/v1/devices with Bearer prov", curl(f"{B}/api/v1/devices", "-H", "authorization: Bearer prov"))
stop(p)
row = subprocess.run(["sqlite3", f"{d}/t.db", "select id, token from devices"], capture_output=True, text=True).stdout.strip()
out(5, "`sqlite3 t.db 'select id,token from devices'`", row)
# 6
d = fresh("c6"); p, B = start(f"{d}/t.db"); reg(B)
big = '{"readings":[{"seq":1,"uptime_ms":18446744073709551615,"values":[]}]}'
out(6, "ingest uptime_ms = 2^64-1", curl("-X", "POST", f"{B}/api/v1/devices/7/readings", "-H", "authorization: Bearer tok-seven", "-H", "content-type: application/json", "-d", big))
a = curl(f"{B}/api/v1/devices/7/readings")
body = json.load(open(f"{WORK}/body"))
out(6, "read back", f"{a[:3]} uptime_ms = {body['readings'][0]['uptime_ms']}")
# 7
out(7, "register id 4294967295", curl("-X", "POST", f"{B}/api/v1/devices", "-H", "content-type: application/json", "-d", '{"id":4294967295,"token":"t"}'))
out(7, "then register without an id", curl("-X", "POST", f"{B}/api/v1/devices", "-H", "content-type: application/json", "-d", '{"token":"u"}'))
stop(p)
# 8
d = fresh("c8"); p, B = start(f"{d}/t.db", "--max-db-mb", "1"); reg(B)
for chunk in range(100):
    rs = [{"seq": chunk * 500 + i, "uptime_ms": 1, "values": [{"kind": "boot", "firmware": "x" * 40, "board": 1}]} for i in range(500)]
    open(f"{WORK}/chunk", "w").write(json.dumps({"readings": rs}))
    a = curl("-X", "POST", f"{B}/api/v1/devices/7/readings", "-H", "authorization: Bearer tok-seven", "-H", "content-type: application/json", "--data-binary", f"@{WORK}/chunk")
    if not a.startswith("200"): break
out(8, "store full (--max-db-mb 1): ingest", a)
out(8, "then GET /readyz", curl(f"{B}/readyz"))
size = sum(os.path.getsize(f"{d}/t.db{s}") for s in ["", "-wal", "-shm"] if os.path.exists(f"{d}/t.db{s}"))
out(10, "--max-db-mb 1, store full: t.db + -wal + -shm on disk", f"{size} bytes ({size/1048576:.2f} MiB)")
stop(p)
# 9
d = fresh("c9"); p, B = start(f"{d}/t.db"); reg(B)
def ing(body): return curl("-X", "POST", f"{B}/api/v1/devices/7/readings", "-H", "authorization: Bearer tok-seven", "-H", "content-type: application/json", "-d", body)
out(9, "ingest `[[[null,5,1,null,[]]]]`", ing("[[[null,5,1,null,[]]]]"))
out(9, "reading with device_id null", ing('{"readings":[{"device_id":null,"seq":1,"uptime_ms":1,"values":[]}]}'))
out(9, "register with token null", curl("-X", "POST", f"{B}/api/v1/devices", "-H", "content-type: application/json", "-d", '{"id":8,"token":null}'))
out(9, "value with another kind's key", ing('{"readings":[{"seq":1,"uptime_ms":1,"values":[{"kind":"counter","value":1,"firmware":"1.2.3"}]}]}'))
out(9, "seq 338.0 (an integer to JSON Schema)", ing('{"readings":[{"seq":338.0,"uptime_ms":1,"values":[]}]}'))
out(9, "seq 338.5", ing('{"readings":[{"seq":338.5,"uptime_ms":1,"values":[]}]}'))
out(9, "body device_id 8 on /devices/7/readings", ing('{"readings":[{"device_id":8,"seq":1,"uptime_ms":1,"values":[]}]}'))
out(9, "GET /api/v1/stream?device_id=x", curl(f"{B}/api/v1/stream?device_id=x"))
out(9, "GET /api/v1/devices/7/readings?limit=abc", curl(f"{B}/api/v1/devices/7/readings?limit=abc"))
out(9, "GET /nope", curl(f"{B}/nope"))
out(9, "DELETE /api/v1/devices", curl("-X", "DELETE", f"{B}/api/v1/devices"))
out(9, "GET /healthz?pad=<9 KiB>", curl(f"{B}/healthz?pad=" + "a" * 9216))
out(9, "GET /healthz with a 40 KiB header", curl(f"{B}/healthz", "-H", "x-big: " + "b" * 40960))
# 10
host, port = B[7:].split(":")
s = socket.create_connection((host, int(port))); s.settimeout(30); t = time.time()
s.sendall(f"POST /api/v1/devices/7/readings HTTP/1.1\r\nhost: x\r\nauthorization: Bearer tok-seven\r\ncontent-type: application/json\r\ncontent-length: 10000000000\r\n\r\n".encode())
resp = b""
while True:
    chunk = s.recv(65536)
    if not chunk: break
    resp += chunk
    if b"\r\n\r\n" in resp and resp.rstrip().endswith(b"}"): break
el = time.time() - t
resp = resp.decode(errors="replace"); s.close()
out(10, "`Content-Length: 10000000000`, no body", f"{resp.splitlines()[0].split(' ',1)[1]} after {el:.2f} s: {resp.split(chr(13)+chr(10)+chr(13)+chr(10),1)[-1].strip()[:170]}")
out(10, "register with a JSON body but no Content-Type", curl("-X", "POST", f"{B}/api/v1/devices", "-H", "content-type:", "-d", '{"id":9,"token":"t9"}'))
stop(p)
d = fresh("c10"); subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", d], check=True)
try:
    p, B = start(f"{d}/t.db"); reg(B); accepted = 0
    for chunk in range(200):
        rs = [{"seq": chunk * 500 + i, "uptime_ms": 1, "values": [{"kind": "boot", "firmware": "x" * 40, "board": 1}]} for i in range(500)]
        open(f"{WORK}/chunk", "w").write(json.dumps({"readings": rs}))
        a = curl("-X", "POST", f"{B}/api/v1/devices/7/readings", "-H", "authorization: Bearer tok-seven", "-H", "content-type: application/json", "--data-binary", f"@{WORK}/chunk")
        if not a.startswith("200"): break
        accepted += json.load(open(f"{WORK}/body"))["accepted"]
    rc = stop(p)
    c = fresh("c10copy"); [shutil.copy(f"{d}/t.db{x}", f"{c}/t.db{x}") for x in ["", "-wal"] if os.path.exists(f"{d}/t.db{x}")]
    kept = subprocess.run(["sqlite3", f"{c}/t.db", "select count(*) from readings"], capture_output=True, text=True).stdout.strip()
    out(10, "1 MiB tmpfs full (ingest answered 503), then SIGTERM", f"exit code {rc}; {accepted} readings accepted, {kept} in the database afterwards")
finally:
    subprocess.run(["umount", d])
json.dump(R, sys.stdout if "--json" in sys.argv else open(os.devnull, "w"), indent=1)
