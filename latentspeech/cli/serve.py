"""CLI: ``latentspeech serve``: the local speech server (:mod:`latentspeech.server`), the model loaded once.

    latentspeech serve --port 8000                      # then open http://127.0.0.1:8000/
    curl -s localhost:8000/v1/voices -F file=@voice.wav -F name=anna
    curl -sN localhost:8000/v1/audio/speech -H 'Content-Type: application/json' \
        -d '{"input": "Hello there.", "voice": "anna", "stream": true}' | aplay
"""

from __future__ import annotations

import sys


def register(sub) -> None:
    p = sub.add_parser("serve", help="run the local speech server (OpenAI-style API + web page)",
                       description="Serve speech synthesis over HTTP: POST /v1/audio/speech, /v1/voices, "
                                   "GET /health and a web page at /.")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--model", default=None, metavar="M", help="bundled model name or model dir (default: latentlm-demo)")
    p.add_argument("--voices-dir", default=None, metavar="D",
                   help="folder of uploaded voices, kept across restarts (default: ~/.cache/latentspeech/voices)")
    p.add_argument("--max-queue", type=int, default=4, metavar="N",
                   help="requests that may wait behind the running one; more get 503 (default 4)")
    p.add_argument("--device", default=None, help="torch device (default: cpu)")
    p.add_argument("--threads", type=int, default=1, metavar="N", help="torch CPU threads (default 1; 0 = torch's default)")
    p.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"))
    p.set_defaults(func=run_serve)


def run_serve(args) -> int:
    from ..api import TTS
    from ..errors import ConfigError
    from .synthesize import set_threads

    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port must be between 0 and 65535, got {args.port}")
    if args.max_queue < 0:
        raise ConfigError(f"--max-queue must be >= 0, got {args.max_queue}")
    try:
        import uvicorn

        from ..server import DEFAULT_VOICES_DIR, create_app, warm_up
    except ImportError as e:
        raise ConfigError(f"the server needs the serve extra (pip install 'latentspeech[serve]'): {e}") from None
    set_threads(args.threads)
    tts = TTS.from_pretrained(args.model, device=args.device)
    warm_up(tts)
    app = create_app(tts, args.voices_dir or DEFAULT_VOICES_DIR, max_queue=args.max_queue)
    print(f"serving {app.state.store.root} voices with {tts!r} on http://{args.host}:{args.port}/", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0
