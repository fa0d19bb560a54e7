"""supervisord's half of scripts/bench-procman: the same workload, printed as one JSON object."""
import json, os, subprocess, sys, tempfile, time, xmlrpc.client, http.client, socket

N = int(os.environ.get("PROCS", "500"))
IDLE = int(os.environ.get("IDLE_SECS", "30"))


class UnixTransport(xmlrpc.client.Transport):
    def __init__(self, path):
        super().__init__()
        self.path = path

    def make_connection(self, host):
        class Conn(http.client.HTTPConnection):
            def connect(s):
                s.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.sock.connect(self.path)
        return Conn("localhost")


def proc_stat(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / tick


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])


d = tempfile.mkdtemp(prefix="mm-supervisord-")
sock = os.path.join(d, "sock")
crash_log = os.path.join(d, "crasher.log")
with open(os.path.join(d, "supervisord.conf"), "w") as f:
    f.write(f"""
[unix_http_server]
file={sock}
[supervisord]
logfile={d}/supervisord.log
pidfile={d}/supervisord.pid
minfds=8192
[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface
[program:sleeper]
command=sleep 3600
numprocs={N}
process_name=%(program_name)s-%(process_num)d
autostart=false
startsecs=0
stdout_logfile=NONE
stderr_logfile=NONE
[program:crasher]
command=sh -c 'date +start%%s%%N; sleep 0.05; date +end%%s%%N; exit 1'
autostart=false
autorestart=true
startsecs=0
startretries=1000
stdout_logfile={crash_log}
""")
subprocess.run([os.path.join(os.path.dirname(sys.executable), "supervisord"), "-c",
                os.path.join(d, "supervisord.conf")], check=True)
for _ in range(100):
    if os.path.exists(sock):
        break
    time.sleep(0.05)
server = xmlrpc.client.ServerProxy("http://localhost", transport=UnixTransport(sock))
pid = server.supervisor.getPID()

t0 = time.monotonic()
server.supervisor.startProcessGroup("sleeper", False)
while sum(1 for p in server.supervisor.getAllProcessInfo()
          if p["group"] == "sleeper" and p["statename"] == "RUNNING") < N:
    time.sleep(0.01)
to_running = time.monotonic() - t0

cpu0 = proc_stat(pid)
time.sleep(IDLE)
idle = (proc_stat(pid) - cpu0) / IDLE * 100
rss = rss_kib(pid)
server.supervisor.stopProcessGroup("sleeper", True)

server.supervisor.startProcess("crasher", False)
restarts = []
deadline = time.monotonic() + 60
while len(restarts) < 50 and time.monotonic() < deadline:
    time.sleep(0.5)
    with open(crash_log) as f:
        lines = [l.strip() for l in f if l.strip()]
    restarts = []
    last_end = None
    for l in lines:
        if l.startswith("end"):
            last_end = int(l[3:])
        elif l.startswith("start") and last_end is not None:
            restarts.append((int(l[5:]) - last_end) / 1e6)
            last_end = None
server.supervisor.stopProcess("crasher", True)
server.supervisor.shutdown()
restarts.sort()
print(json.dumps({"procs": N, "to_running_s": to_running, "idle_cpu_pct": idle, "rss_kib": rss,
                  "restart_ms_p50": restarts[len(restarts) // 2] if restarts else None}))
