"""Streaming speed: time to first audio (cold CLI process, warm server), chunk cadence, real-time factor, and
the server under 1/2/4 concurrent clients (latency, throughput, status codes, memory).

    .venv/bin/python bench/stream.py                       # bundled model, prints markdown tables
    .venv/bin/python bench/stream.py --model valle-demo --warm-runs 5

What it runs:
- cold: ``python -m latentspeech synthesize --stream --stream-format pcm`` as a new process, timed from
  its start to the first audio byte on stdout and to its end;
- warm: ``python -m latentspeech serve`` on a free port, the bundled prompt uploaded as a voice, then
  one-sentence streaming requests (``response_format: pcm``): first audio byte, the gaps between chunks,
  stalls (a chunk arriving after a player that started at the first byte would have run dry), and RTF
  (request time / audio seconds); one multi-sentence request for the RTF of a longer stream;
- load: C concurrent clients × R streaming requests each: p50/p95 latency of a whole request, audio seconds
  produced per second, the count of 200 / 503 / other answers, and the server's RSS (``/proc``) before
  the requests (idle, after start-up and the voice upload) and at its peak.
Times are wall-clock on this machine; run it on an otherwise idle machine for figures worth comparing.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from latentspeech.checkpoint import ASSETS

SENTENCE = "The quick brown fox jumps over the lazy dog."
PARAGRAPH = ("The quick brown fox jumps over the lazy dog. Speech synthesis runs on this computer. "
             "Every sentence starts to play while the next one is being generated.")
SR_BYTES = 2  # 16-bit mono


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(q / 100 * (len(xs) - 1))))]


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class RssSampler(threading.Thread):
    def __init__(self, pid: int, every: float = 0.02):
        super().__init__(daemon=True)
        self.pid, self.every, self.peak, self.stop = pid, every, 0.0, threading.Event()

    def run(self):
        while not self.stop.is_set():
            self.peak = max(self.peak, rss_mb(self.pid))
            time.sleep(self.every)


def cold(args, prompt: Path) -> dict:
    cmd = [sys.executable, "-m", "latentspeech", "synthesize", "--text", SENTENCE, "--prompt", str(prompt),
           "--stream", "--stream-format", "pcm", "--seed", "0"] + (["--model", args.model] if args.model else [])
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    first = proc.stdout.read(1)
    t_first = time.perf_counter() - t0
    n = len(first) + len(proc.stdout.read())
    proc.wait()
    total = time.perf_counter() - t0
    if proc.returncode != 0 or not first:
        raise SystemExit(f"cold run failed (exit {proc.returncode}): {' '.join(cmd)}")
    return {"ttfa": t_first, "total": total, "audio": n / SR_BYTES / args.sample_rate}


def request(port: int, body: dict, timeout: float = 300) -> dict:
    """One POST /v1/audio/speech, read as it arrives: status, first byte, chunk (time, bytes), total."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    t0 = time.perf_counter()
    conn.request("POST", "/v1/audio/speech", json.dumps(body), {"Content-Type": "application/json"})
    resp = conn.getresponse()
    out = {"status": resp.status, "chunks": [], "ttfa": None}
    while True:
        data = resp.read1(1 << 16)
        if not data:
            break
        out["chunks"].append((time.perf_counter() - t0, len(data)))
    out["total"] = time.perf_counter() - t0
    conn.close()
    if out["chunks"] and resp.status == 200:
        out["ttfa"] = out["chunks"][0][0]
    out["bytes"] = sum(n for _, n in out["chunks"])
    return out


def upload(port: int, path: Path, name: str) -> str:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\n{name}\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"prompt.wav\"\r\n"
            f"Content-Type: audio/wav\r\n\r\n").encode() + path.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("POST", "/v1/voices", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    resp = conn.getresponse()
    answer = json.loads(resp.read())
    if resp.status != 200:
        raise SystemExit(f"voice upload failed: {answer}")
    return answer["id"]


def cadence(r: dict, sr: int) -> tuple[float, int]:
    """(largest gap between chunks, stalls of a player that starts at the first byte)."""
    times = [t for t, _ in r["chunks"]]
    gaps = [b - a for a, b in zip(times, times[1:])]
    stalls, played = 0, 0.0
    for t, n in r["chunks"]:
        if t > r["ttfa"] + played + 1e-3:
            stalls += 1
        played += n / SR_BYTES / sr
    return (max(gaps) if gaps else 0.0), stalls


def start_server(args, voices: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    cmd = [sys.executable, "-m", "latentspeech", "serve", "--port", str(port), "--voices-dir", str(voices),
           "--max-queue", str(args.max_queue), "--log-level", "warning"] + (["--model", args.model] if args.model else [])
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited ({proc.returncode}): {' '.join(cmd)}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/health")
            health = json.loads(conn.getresponse().read())
            args.sample_rate = health["sample_rate"]
            return proc, port
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("the server did not answer /health within 120 s")


def load(port: int, voice: str, clients: int, per_client: int, sr: int) -> dict:
    results: list[dict] = []
    lock = threading.Lock()

    def client(k: int):
        for i in range(per_client):
            try:
                r = request(port, {"input": SENTENCE, "voice": voice, "stream": True, "response_format": "pcm"})
            except OSError as e:
                r = {"status": f"error {type(e).__name__}", "total": float("nan"), "bytes": 0}
            with lock:
                results.append(r)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    ok = [r for r in results if r["status"] == 200]
    return {"clients": clients, "n": len(results), "ok": len(ok),
            "busy": sum(r["status"] == 503 for r in results),
            "other": sum(r["status"] not in (200, 503) for r in results),
            "p50": pct([r["total"] for r in ok], 50), "p95": pct([r["total"] for r in ok], 95),
            "ttfa_p50": pct([r["ttfa"] for r in ok], 50),
            "audio_per_s": sum(r["bytes"] for r in ok) / SR_BYTES / sr / wall, "req_per_s": len(ok) / wall}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="bundled model name or model dir (default: latentlm-demo)")
    p.add_argument("--prompt", default=None, help="prompt wav (default: the bundled demo voice)")
    p.add_argument("--cold-runs", type=int, default=3)
    p.add_argument("--warm-runs", type=int, default=10)
    p.add_argument("--clients", default="1,2,4", help="concurrent clients of the load runs (default 1,2,4)")
    p.add_argument("--per-client", type=int, default=5, help="requests per client (default 5)")
    p.add_argument("--max-queue", type=int, default=4, help="the server's --max-queue (default 4)")
    args = p.parse_args()
    args.sample_rate = 16000
    prompt = Path(args.prompt) if args.prompt else next(iter(sorted((ASSETS / "prompts").glob("*.wav"))))

    colds = [cold(args, prompt) for _ in range(args.cold_runs)]
    with tempfile.TemporaryDirectory() as tmp:
        proc, port = start_server(args, Path(tmp) / "voices")
        try:
            voice = upload(port, prompt, "bench")
            sampler = RssSampler(proc.pid)
            idle = rss_mb(proc.pid)
            sampler.start()
            sr = args.sample_rate
            warm = [request(port, {"input": SENTENCE, "voice": voice, "stream": True, "response_format": "pcm"})
                    for _ in range(args.warm_runs)]
            bad = [r["status"] for r in warm if r["status"] != 200]
            if bad:
                raise SystemExit(f"warm requests failed: {bad}")
            long = request(port, {"input": PARAGRAPH, "voice": voice, "stream": True, "response_format": "pcm"})
            loads = [load(port, voice, int(c), args.per_client, sr) for c in args.clients.split(",")]
            sampler.stop.set()
            sampler.join()
            peak = max(sampler.peak, rss_mb(proc.pid))
        finally:
            proc.terminate()
            proc.wait(timeout=30)

    audio = lambda r: r["bytes"] / SR_BYTES / sr  # noqa: E731
    ttfa = [r["ttfa"] for r in warm]
    rtf = [r["total"] / audio(r) for r in warm]
    gaps, stalls = zip(*(cadence(r, sr) for r in warm))
    chunk_s = [n / SR_BYTES / sr for r in warm for _, n in r["chunks"]]
    print(f"model {args.model or 'latentlm-demo'}, {os.cpu_count()} CPUs, prompt {prompt.name}\n")
    print("| measure | p50 | p95 | runs |\n| --- | --- | --- | --- |")
    print(f"| cold CLI process: first audio (s) | {pct([c['ttfa'] for c in colds], 50):.2f} | "
          f"{pct([c['ttfa'] for c in colds], 95):.2f} | {len(colds)} |")
    print(f"| cold CLI process: whole run (s) | {pct([c['total'] for c in colds], 50):.2f} | "
          f"{pct([c['total'] for c in colds], 95):.2f} | {len(colds)} |")
    print(f"| warm server: first audio byte (s) | {pct(ttfa, 50):.3f} | {pct(ttfa, 95):.3f} | {len(warm)} |")
    print(f"| warm server: RTF, one sentence ({statistics.mean(audio(r) for r in warm):.1f} s) | {pct(rtf, 50):.3f} | "
          f"{pct(rtf, 95):.3f} | {len(warm)} |")
    print(f"| warm server: RTF, three sentences ({audio(long):.1f} s) | {long['total'] / audio(long):.3f} | | 1 |")
    print(f"| warm server: largest gap between chunks (s) | {pct(list(gaps), 50):.3f} | {pct(list(gaps), 95):.3f} "
          f"| {len(warm)} |")
    print(f"| warm server: chunk length (s of audio) | {pct(chunk_s, 50):.3f} | {pct(chunk_s, 95):.3f} "
          f"| {len(chunk_s)} chunks |")
    print(f"| warm server: playback stalls per request | {pct(list(stalls), 50):.0f} | {pct(list(stalls), 95):.0f} "
          f"| {len(warm)} |")
    print(f"\nconcurrent streaming clients, {args.per_client} one-sentence requests each, --max-queue {args.max_queue}:\n")
    print("| clients | requests | 200 | 503 | other | latency p50 (s) | latency p95 (s) | first byte p50 (s) "
          "| audio s / s | requests / s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for L in loads:
        print(f"| {L['clients']} | {L['n']} | {L['ok']} | {L['busy']} | {L['other']} | {L['p50']:.2f} | "
              f"{L['p95']:.2f} | {L['ttfa_p50']:.2f} | {L['audio_per_s']:.2f} | {L['req_per_s']:.2f} |")
    print(f"\nserver RSS: idle {idle:.0f} MB, peak {peak:.0f} MB ({peak / idle:.2f}x idle)\n")
    checks = [("warm first audio p50 <= 0.35 s", pct(ttfa, 50) <= 0.35),
              ("warm RTF p50 <= 0.3", pct(rtf, 50) <= 0.3),
              ("only 200 or 503 under load", all(L["other"] == 0 for L in loads)),
              ("peak RSS <= 1.5x idle", peak <= 1.5 * idle)]
    for what, ok in checks:
        print(f"- [{'x' if ok else ' '}] {what}")
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
