"""Where redis-server's CPU goes per job: ``perf`` (or ``valgrind --tool=callgrind``) on a private redis-server
while the library enqueues jobs one by one and while ``jobs-worker`` processes drain them.

Not part of ``make bench`` nor of CI (it needs ``perf`` or ``valgrind`` and root or a permissive
``kernel.perf_event_paranoid``). Run with the project .venv::

    .venv/bin/python -m bench.profile_redis --jobs 6000 --procs 2 --concurrency 4          # perf
    .venv/bin/python -m bench.profile_redis --tool callgrind --jobs 300 --procs 1 --concurrency 4

Per phase (``enqueue``, ``drain``) it prints one JSON line: commands and Redis CPU per job (``INFO``), and
the samples (perf: ``cpu-clock`` time, kernel included; callgrind: instructions, user space only) split
into buckets — the Lua VM, the Lua<->Redis bridge (``redis.call`` marshalling, script lookup), cjson, the
commands' own work (data structures), networking and protocol (kernel system calls included), the event
loop, memory allocation, the cron (active expiry) — plus inclusive shares of a few frames (the script
calls, the commands run from Lua) when call graphs are recorded. ``--keep DIR`` keeps the raw profiles
for ``perf report -i`` / ``callgrind_annotate``.

Debian's redis-server is stripped but linked with ``-rdynamic``: its functions are in the dynamic symbol
table, which is what perf and callgrind name them by (static helpers are folded into their neighbours).
"""

from __future__ import annotations

import argparse
import bisect
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis
from jobs_core import scripts
from jobs_core.delivery import Finish
from jobs_core.model import Result
from jobs_core.redis_tuning import redis_server_args
from jobs_core.store import JobStore

from bench.common import RedisCost, free_port
from bench.ours import drain, enqueue_lib, settings, start_workers

#: (bucket, pattern on the symbol name): the first that matches wins, so the specific ones come first.
BUCKETS: list[tuple[str, re.Pattern[str]]] = [
    ("cjson", re.compile(r"^(json_|strbuf_|fpconv_|lua_cjson|luaopen_cjson|encode_|decode_)")),
    ("lua-redis bridge", re.compile(
        r"^(luaRedis|luaPush|luaReply|luaCallFunction|luaCreate|luaProtectedTable|luaSetGlobal|luaRegister|"
        r"luaError|luaExtract|redisProtocolToLua|luaArgsToRedisArgv|evalGenericCommand|evalShaCommand|"
        r"evalCommand|scriptCall|scriptRun|scriptPrepare|scriptReset|scriptSet|scriptIs|scriptInterrupt|"
        r"luaMaskCountHook|dictSdsKeyCompare|freeClientArgv|callCtx|scriptVerify|luaLdb|ldb|sha1hex|"
        r"evalGetCommandFlags|evalExtractShebang|scriptCheck)")),
    ("lua vm", re.compile(r"^(lua[A-Z_]|lua_|luaL_|luaopen|str_|math_|tab_|auxsort|luaB_|index2adr|"
                          r"lua\w*|f_|sort_comp|set2|addfield|generic_find|str_find_aux)")),
    ("networking + protocol", re.compile(
        r"^(readQueryFromClient|processInputBuffer|processMultibulkBuffer|processInlineBuffer|_addReply|"
        r"addReply|setDeferred|writeToClient|_writeToClient|handleClientsWithPendingWrites|prepareClientToWrite|"
        r"connSocket|connRead|connWrite|conn[A-Z]|clientHasPendingReplies|resetClient|commandProcessed|"
        r"processPendingCommands|freeClientArgv|trimClientQueryBuffer|clientsCronResize|"
        r"_clientHasPendingRepliesSlave|clientInstall|putClientInPendingWriteQueue|sdsMakeRoomFor.*Query|"
        r"beforeNextClient|readSyncBulk|lookupCommand|processCommand|call$|afterCommand|updateStatsOnCommit|"
        r"updateCommandLatencyHistogram|hdr_)")),
    ("event loop", re.compile(r"^(ae[A-Z]|beforeSleep|afterSleep|whileBlockedCron|processEventsWhileBlocked|"
                              r"handleBlockedClients|blockedBeforeSleep|moduleFire|moduleHandle)")),
    ("cron + expiry", re.compile(r"^(serverCron|activeExpire|databasesCron|clientsCron|activeDefrag|"
                                 r"expire|checkAlreadyExpired|keyIsExpired|expireIfNeeded|propagateDeletion|"
                                 r"trackInstantaneous|incrementallyRehash|dictRehash|updateCachedTime|"
                                 r"getExpire|run_with_period)")),
    ("allocator", re.compile(r"^(je_|malloc|free|calloc|realloc|zmalloc|zfree|zcalloc|zrealloc|ztrymalloc|"
                             r"zlibc_free|extent_|arena_|tcache_|imalloc|isalloc|sdallocx|rallocx|mallocx|"
                             r"__libc_malloc|__libc_free|_int_malloc|_int_free)")),
    ("commands (data structures)", re.compile(
        r"(Command$|^dict|^lp[A-Z]|^zsl|^zset|^hash|^list|^quicklist|^stream|^rax|^sds|^object|^createObject|"
        r"^decrRefCount|^incrRefCount|^lookupKey|^dbAdd|^dbSet|^setKey|^signalModifiedKey|^notifyKeyspace|"
        r"^touchWatchedKey|^getLongLong|^string2|^ll2string|^ull2string|^siphash|^ziplist|^intset|^getDecoded|"
        r"^tryObjectEncoding|^setExpire|^removeExpire|^genericSet|^zadd|^hset|^xadd|^publish|^pubsub|^keyHash|"
        r"^rdbLoad|^dbDelete|^dbGeneric|^propagate|^alsoPropagate|^also|^rewriteClientCommand|^moduleNotify|"
        r"^trackingInvalidate|^serverLog|^mstime|^ustime|^getMonotonic|^monotonic|^listAdd|^listDel|^listNext|"
        r"^listRewind|^listCreate|^listRelease|^streamID|^equalStringObjects|^compareStringObjects|"
        r"^checkType|^getGenericCommand|^stringmatch|^memtest|^string)")),
    ("libc (mem*, str*)", re.compile(r"^(__mem|mem|__str|str|__nss|_IO_|__GI|__libc|__vsnprintf|vsnprintf|"
                                     r"__printf|snprintf|_itoa|__strtol|strtol|strtod|____strtod|__mpn|"
                                     r"round_and_return|__clock_gettime|clock_gettime|__vdso|gettimeofday|time$)")),
]
KERNEL_NET = re.compile(r"(tcp_|ip_|__ip|inet_|sock_|__sock|skb|__skb|__dev_|dev_|net_|__net|napi|loopback|"
                        r"__x64_sys_(read|write|sendto|recvfrom|sendmsg|recvmsg)|ksys_(read|write)|"
                        r"sk_|__sk|__tcp|release_sock|lock_sock|neigh|eth_|__netif|netif_|do_softirq|"
                        r"__do_softirq|security_socket|__sys_(send|recv))")
KERNEL_LOOP = re.compile(r"(epoll|ep_|do_epoll|__x64_sys_epoll|schedule|__schedule|finish_task_switch|"
                         r"pick_next|hrtimer|do_nanosleep|futex)")
#: frames whose inclusive share is reported (perf with call graphs only)
FRAMES = ("aeProcessEvents", "readQueryFromClient", "processCommand", "call", "evalGenericCommand",
          "luaCallFunction", "luaRedisGenericCommand", "scriptCall", "handleClientsWithPendingWrites",
          "writeToClient", "serverCron", "activeExpireCycle", "beforeSleep", "lua_cjson_encode", "json_decode",
          "luaH_resize", "luaC_step", "luaV_execute", "luaD_precall", "lua_pcall", "luaCreateFunction")


def bucket(symbol: str, kernel: bool) -> str:
    """The bucket a sampled symbol belongs to (kernel symbols: networking, event loop or other kernel)."""
    if kernel:
        if KERNEL_NET.search(symbol):
            return "kernel: networking syscalls"
        if KERNEL_LOOP.search(symbol):
            return "kernel: epoll + scheduling"
        return "kernel: other (syscall entry/exit, VM exits, timers)"
    for name, pattern in BUCKETS:
        if pattern.search(symbol):
            return name
    return "other"


@contextmanager
def private_redis(tool: str, workdir: Path) -> Iterator[tuple[int, subprocess.Popen[bytes], Path | None]]:
    """A redis-server on a free port (under callgrind, instrumentation off until a phase turns it on)."""
    port = free_port()
    argv = [shutil.which("redis-server") or "redis-server", "--port", str(port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--dir", str(workdir), "--maxclients", "4000",
            *redis_server_args()]  # the shipped settings, as bench.common's servers: records stay listpacks
    out: Path | None = None
    if tool == "callgrind":
        out = workdir / "callgrind.out"
        argv = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}.%p",
                "--dump-instr=no", *argv]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(port=port)
    # valgrind starts redis-server slowly, and more slowly still on a loaded machine (make bench-smoke runs
    # every part at once): a PING may time out on an accepted connection before the server answers
    deadline = time.monotonic() + (180 if tool == "callgrind" else 60)
    while True:
        try:
            client.ping()
            break
        except (redis.ConnectionError, redis.TimeoutError):
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()  # not left running (it is stopped below only once it has answered)
                proc.wait(60)
                raise
            time.sleep(0.1)
    try:
        yield port, proc, out
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()


def perf_phase(pid: int, data: Path, freq: int, graph: bool, body: Callable[[], None]) -> None:
    """Run ``body`` with ``perf record`` attached to ``pid`` (software clock: a VM often has no PMU)."""
    argv = ["perf", "record", "-q", "-e", "cpu-clock", "-F", str(freq), "-p", str(pid), "-o", str(data)]
    if graph:
        argv += ["--call-graph", "dwarf,8192"]
    rec = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)  # perf attaches
    try:
        body()
    finally:
        rec.send_signal(signal.SIGINT)
        rec.wait(60)


class Symbols:
    """The redis-server binary's dynamic symbols, to name an address perf could not (a static or hidden
    function, e.g. the Lua VM's ``luaV_execute``) after the exported function just before it."""

    def __init__(self) -> None:
        binary = os.path.realpath(shutil.which("redis-server") or "redis-server")
        self.binary = os.path.basename(binary)
        listing = subprocess.run(["nm", "-D", "--defined-only", binary], capture_output=True, text=True).stdout
        pairs = sorted((int(a, 16), n) for a, _, n in (ln.split(None, 2) for ln in listing.splitlines()
                                                      if len(ln.split()) == 3))
        self.addresses = [a for a, _ in pairs]
        self.names = [n for _, n in pairs]

    def name(self, dso: str, symbol: str) -> str:
        if dso != self.binary or not symbol.startswith("0x") or not self.addresses:
            return symbol
        i = bisect.bisect_right(self.addresses, int(symbol, 16)) - 1
        return f"{self.names[i]}+" if i >= 0 else symbol


def perf_split(data: Path, graph: bool, symbols: Symbols) -> dict[str, Any]:
    """Self time by bucket (and by top symbols), and inclusive shares of :data:`FRAMES` with call graphs."""
    flat = subprocess.run(["perf", "report", "-i", str(data), "--stdio", "--no-children", "--sort", "dso,sym",
                           "-g", "none", "--percent-limit", "0"], capture_output=True, text=True, check=True).stdout
    buckets: dict[str, float] = defaultdict(float)
    top: dict[str, float] = defaultdict(float)
    line = re.compile(r"^\s+([\d.]+)%\s+(\S+)\s+\[([k.])\]\s+(\S+)")
    samples = re.search(r"# Samples: (\S+)", flat)
    for raw in flat.splitlines():
        m = line.match(raw)
        if not m:
            continue
        share, dso, kernel = float(m.group(1)), m.group(2), m.group(3) == "k"
        symbol = symbols.name(dso, m.group(4))
        buckets[bucket(symbol.rstrip("+"), kernel)] += share
        top[("[k] " if kernel else "") + symbol] += share
    out: dict[str, Any] = {"samples": samples.group(1) if samples else None,
                           "self_by_bucket_pct": {k: round(v, 1) for k, v in sorted(buckets.items(),
                                                                                   key=lambda kv: -kv[1])},
                           "top_symbols_pct": [(s, round(p, 2)) for s, p in sorted(top.items(),
                                                                                    key=lambda kv: -kv[1])[:30]]}
    if graph:
        children = subprocess.run(["perf", "report", "-i", str(data), "--stdio", "--children", "--sort", "sym",
                                   "-g", "none", "--percent-limit", "0.3"],
                                  capture_output=True, text=True, check=True).stdout
        inclusive: dict[str, float] = {}
        row = re.compile(r"^\s+([\d.]+)%\s+([\d.]+)%\s+\[([k.])\]\s+(\S+)")
        for raw in children.splitlines():
            m = row.match(raw)
            if m and m.group(4) in FRAMES:
                inclusive[m.group(4)] = float(m.group(1))
        out["inclusive_pct"] = inclusive
        out["tree_pct"] = tree(inclusive)
    return out


def tree(inc: dict[str, float]) -> dict[str, float]:
    """Nested inclusive shares turned into disjoint layers (each frame minus the frame it calls)."""
    g = inc.get
    layers = {
        "outside the command (event loop, epoll, reply writes, cron)": 100 - g("readQueryFromClient", 0),
        "read + protocol parsing": g("readQueryFromClient", 0) - g("processCommand", 0),
        "command lookup, ACL, checks": g("processCommand", 0) - g("call", 0),
        "plain commands + call() bookkeeping (stats, latency histogram)": g("call", 0) - g("evalGenericCommand", 0),
        "script call setup (lookup, KEYS/ARGV tables, reply conversion)":
            g("evalGenericCommand", 0) - g("lua_pcall", 0),
        "Lua execution (VM, prelude, cjson, redis.call argument marshalling)": g("lua_pcall", 0) - g("scriptCall", 0),
        "commands run by scripts (scriptCall)": g("scriptCall", 0),
    }
    return {k: round(v, 1) for k, v in layers.items()}


def callgrind_split(out_prefix: Path, jobs: int, symbols: Symbols) -> dict[str, Any]:
    """Instructions per job by bucket (self cost; a hidden function is named after its exported neighbour,
    ``name+``) and inclusive instructions per job of :data:`FRAMES`."""
    dump = str(last_dump(out_prefix))
    row = re.compile(r"^\s*([\d,]+)\s+\([^)]*\)\s+(?:\*\s+)?\S*?:(\S+?)(?:'\d+)?\s+\[(\S+)\]")

    def rows(*extra: str) -> Iterator[tuple[float, str]]:
        text = subprocess.run(["callgrind_annotate", "--threshold=100", *extra, dump], capture_output=True,
                              text=True, check=True).stdout
        for raw in text.splitlines():
            m = row.match(raw)
            if m:
                yield float(m.group(1).replace(",", "")), symbols.name(os.path.basename(m.group(3)), m.group(2))

    buckets: dict[str, float] = defaultdict(float)
    top: dict[str, float] = defaultdict(float)
    for count, symbol in rows():
        buckets[bucket(symbol.rstrip("+"), False)] += count
        top[symbol] += count
    inclusive: dict[str, int] = {}
    for count, sym in rows("--inclusive=yes"):  # a recursive function is listed once per depth: the outermost
        if sym in FRAMES:
            inclusive[sym] = max(inclusive.get(sym, 0), round(count / jobs))
    total = sum(buckets.values())
    return {"instructions_per_job": round(total / jobs),
            "self_by_bucket_instr_per_job": {k: round(v / jobs) for k, v in sorted(buckets.items(),
                                                                                    key=lambda kv: -kv[1])},
            "top_symbols_instr_per_job": [(s, round(c / jobs)) for s, c in sorted(top.items(),
                                                                                   key=lambda kv: -kv[1])[:30]],
            "inclusive_instr_per_job": dict(sorted(inclusive.items(), key=lambda kv: -kv[1])[:30])}


def callgrind_phase(pid: int, body: Callable[[], None]) -> None:
    """Collect instructions only while ``body`` runs (``callgrind_control`` toggles collection)."""
    subprocess.run(["callgrind_control", "-z", str(pid)], capture_output=True, check=False)
    subprocess.run(["callgrind_control", "-i", "on", str(pid)], capture_output=True, check=True)
    try:
        body()
    finally:
        subprocess.run(["callgrind_control", "-i", "off", str(pid)], capture_output=True, check=True)
        subprocess.run(["callgrind_control", "-d", str(pid)], capture_output=True, check=True)


# --------------------------------------------------------------------------- lever: Redis Functions
class FcallClient(redis.Redis):
    """A client that sends ``FCALL <function>`` where the code says ``EVALSHA <sha>`` of a script that has a
    function library loaded (:func:`load_libraries`): the same keys, arguments and reply."""

    functions: dict[str, str] = {}

    def execute_command(self, *args: Any, **options: Any) -> Any:
        if args and args[0] == "EVALSHA" and args[1] in self.functions:
            args = ("FCALL", self.functions[args[1]], *args[2:])
        return super().execute_command(*args, **options)


def library(name: str) -> str:
    """Command ``name`` as a Redis Functions library: its includes run once, when the library is loaded
    (at the first call; they become the body's upvalues), and each call runs only the command's body. The
    includes read ``KEYS`` and ``ARGV`` as globals; here they are the library's locals, set by each call."""
    source = (scripts._LUA / f"{name}.lua").read_text(encoding="utf-8")
    head = "\n".join(ln for ln in source.splitlines() if scripts._INCLUDE.match(ln))
    body = "\n".join(ln for ln in source.splitlines() if not scripts._INCLUDE.match(ln))
    seen: set[str] = set()

    def expand(text: str) -> str:
        def include(m: re.Match[str]) -> str:
            if m.group(1) in seen:
                return ""
            seen.add(m.group(1))
            return expand((scripts._LUA / "includes" / f"{m.group(1)}.lua").read_text(encoding="utf-8"))
        return scripts._INCLUDE.sub(include, text)

    # the prelude runs at the first call, not at load (a library's load may not read globals like math)
    return (f"#!lua name=jobsbench_{name}\nlocal KEYS, ARGV, body\nlocal function init()\n{expand(head)}\n"
            f"body = function()\n{body}\nend\nend\n"
            f"redis.register_function('{name}', function(keys, args)\n  KEYS, ARGV = keys, args\n"
            f"  if body == nil then init() end\n  return body()\nend)\n")


def load_libraries(client: redis.Redis, names: list[str]) -> dict[str, str]:
    """Load a library per command; returns {sha of the command's script: function name}."""
    out = {}
    for name in names:
        client.execute_command("FUNCTION", "LOAD", "REPLACE", library(name))
        out[hashlib.sha1(scripts.load(name).encode()).hexdigest()] = name
    return out


def worker_loop(store: JobStore, slots: int) -> int:
    """The worker's hot path in this process (no slot children): claim ``slots``, finish them and claim
    again in one call each round (``finish_and_claim``), until nothing is left; returns jobs finished."""
    result = Result(data=b'"ok"', media_type="application/json")
    held = store.claim("bench:1", slots)
    done = 0
    while held:
        finishes = [Finish(j.id, j.attempt, "succeeded", result=result) for j in held]
        _, held = store.finish_and_claim("bench:1", finishes, slots)
        done += len(finishes)
    return done


def brief(cost: dict[str, Any]) -> dict[str, Any]:
    return {"commands": round(cost["commands"], 2), "cpu_us": round(cost["redis_cpu_us"], 1),
            "by_command": cost["by_command"]}


def last_dump(out_prefix: Path) -> Path:
    """The newest ``callgrind_control -d`` dump (``<out_prefix>.<pid>.<n>``)."""
    dumps = [f for f in out_prefix.parent.glob(out_prefix.name + ".*.*") if f.suffix[1:].isdigit()]
    return max(dumps, key=lambda f: int(f.suffix[1:]))


def instructions(out_prefix: Path) -> float:
    """Instructions in the newest callgrind dump, less the cron's (``serverCron`` runs 10 times a second of
    wall time, and valgrind's wall time depends on the load: left in, it makes the count load-dependent)."""
    text = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=100", str(last_dump(out_prefix))],
                          capture_output=True, text=True, check=True).stdout
    total = re.search(r"^\s*([\d,]+)\s.*PROGRAM TOTALS", text, re.M)
    cron = re.findall(r"^\s*([\d,]+)\s.*:serverCron \[", text, re.M)
    if total is None:
        return float("nan")
    return float(total.group(1).replace(",", "")) - max((float(c.replace(",", "")) for c in cron), default=0.0)


def lever_functions(rounds: int, jobs: int, slots: int, tool: str) -> None:
    """A/B, alternating on one private Redis: the library's enqueue and the worker's finish+claim as
    EVALSHA (today) and as FCALL of a library loaded once. Prints Redis CPU per job per phase (with
    ``tool == "callgrind"``: Redis instructions per job, which load does not change)."""
    with private_redis(tool, Path(tempfile.mkdtemp(prefix="jobs-profile-redis-"))) as (port, proc, cg_out):
        url = f"redis://127.0.0.1:{port}/0"
        plain = redis.Redis(port=port)
        fcall = FcallClient(port=port)
        FcallClient.functions = load_libraries(plain, ["enqueue", "finish_claim"])

        def measured(body: Callable[[], object]) -> dict[str, Any]:
            cost = RedisCost(plain)
            if cg_out is None:
                body()
                return brief(cost.per_job(jobs))
            callgrind_phase(proc.pid, body)
            out = brief(cost.per_job(jobs))
            out["instructions"] = round(instructions(cg_out) / jobs)
            return out

        for r in range(rounds):
            for mode, client in (("evalsha", plain), ("fcall", fcall)) if r % 2 == 0 else (("fcall", fcall),
                                                                                           ("evalsha", plain)):
                plain.flushdb()
                store = JobStore(client, settings(url))
                enq = measured(lambda store=store: enqueue_lib(store, jobs))  # type: ignore[misc]
                work = measured(lambda store=store: worker_loop(store, slots))  # type: ignore[misc]
                print(json.dumps({"lever": "functions", "tool": tool, "round": r, "mode": mode, "jobs": jobs,
                                  "loadavg": round(os.getloadavg()[0], 1), "enqueue": enq, "finish_claim": work}),
                      flush=True)

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tool", choices=["perf", "callgrind"], default="perf")
    parser.add_argument("--jobs", type=int, default=6000)
    parser.add_argument("--procs", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--freq", type=int, default=1999, help="perf: samples per second")
    parser.add_argument("--no-graph", action="store_true", help="perf: no call graphs (lighter)")
    parser.add_argument("--keep", type=Path, help="keep the raw profiles in this directory")
    parser.add_argument("--lever", choices=["functions"], help="instead of profiling: A/B a lever")
    parser.add_argument("--rounds", type=int, default=4, help="--lever: A/B rounds")
    args = parser.parse_args()
    if args.lever == "functions":
        lever_functions(args.rounds, args.jobs, args.concurrency, args.tool)
        return
    workdir = Path(tempfile.mkdtemp(prefix="jobs-profile-redis-"))
    graph = not args.no_graph
    symbols = Symbols()
    try:
        with private_redis(args.tool, workdir) as (port, proc, cg_out):
            url = f"redis://127.0.0.1:{port}/0"
            client = redis.Redis(port=port)
            store = JobStore(client, settings(url))
            load = os.getloadavg()
            for name in ("enqueue", "drain"):
                cost = RedisCost(client)
                if name == "enqueue":
                    def body() -> None:
                        enqueue_lib(store, args.jobs)
                    workers = None
                else:
                    workers = start_workers(url, args.procs, args.concurrency).__enter__()

                    def body(procs: Any = workers) -> None:
                        drain(store, args.jobs, procs)
                if args.tool == "perf":
                    data = workdir / f"{name}.perf.data"
                    perf_phase(proc.pid, data, args.freq, graph, body)
                    split = perf_split(data, graph, symbols)
                else:
                    callgrind_phase(proc.pid, body)
                    assert cg_out is not None
                    split = callgrind_split(cg_out, args.jobs, symbols)
                per_job = cost.per_job(args.jobs)
                if workers is not None:
                    workers.__exit__(None, None, None)
                print(json.dumps({"phase": name, "tool": args.tool, "jobs": args.jobs, "procs": args.procs,
                                  "concurrency": args.concurrency, "loadavg_at_start": load[0],
                                  "loadavg_now": os.getloadavg()[0], "commands": round(per_job["commands"], 2),
                                  "round_trips": round(per_job["round_trips"], 2),
                                  "redis_cpu_us": round(per_job["redis_cpu_us"], 1),
                                  "by_command": per_job["by_command"], **split}), flush=True)
    finally:
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            for f in workdir.iterdir():
                shutil.copy(f, args.keep / f.name)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
