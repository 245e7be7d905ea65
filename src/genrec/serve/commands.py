"""`genrec serve RUN_FOLDER`: the HTTP API and web page over a run's retrievers."""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import fields
from pathlib import Path

from genrec.serve.limits import ServeLimits

DEFAULT_RETRIEVERS = "bm25"

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    serve = subparsers.add_parser(
        "serve", help="serve a run folder's retrievers over HTTP (API + web page)",
        description="Serve RUN_FOLDER's retrievers: API at /search, /recommend, /retrieve, …; OpenAPI at /docs; "
                    "the web page at /. Reload with POST /admin/reload and the token in $GENREC_ADMIN_TOKEN.",
    )
    serve.add_argument("run_folder", type=Path, help="a run folder with data/ (and the stages the retrievers need)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--retrievers", default=DEFAULT_RETRIEVERS,
                       help=f"comma-separated registry names, first is the default (default: {DEFAULT_RETRIEVERS})")
    serve.add_argument("--max-batch", type=int, default=64, help="micro-batch size bound; 1 turns batching off")
    serve.add_argument("--max-wait-ms", type=float, default=5.0, help="how long a request waits for companions")
    serve.add_argument("--parallel-from", type=int, default=32,
                       help="batches of at least this many requests use every torch thread (--threads), "
                            "smaller ones one thread")
    serve.add_argument("--workers", type=int, default=1,
                       help="server processes sharing the port, each with its own model and micro-batcher "
                            "(docs/serve.md, 'Workers and replicas'); reload them with SIGHUP to the main process")
    serve.add_argument("--threads", type=int, default=None,
                       help="torch threads per process (default: $OMP_NUM_THREADS, else the CPU cores divided "
                            "among the workers; with one worker and neither, torch's own default)")
    serve.add_argument("--log-level", default="warning", help="uvicorn's access and server log level (genrec's own: genrec --log-level)")
    limits = serve.add_argument_group("limits", "what one call may cost (docs/serve.md, 'Limits')")
    for limit in fields(ServeLimits):
        limits.add_argument("--" + limit.name.replace("_", "-"), type=type(limit.default), default=limit.default,
                            dest=limit.name, help=f"{limit.metadata['help']} (default: {limit.default})")
    serve.set_defaults(run=_serve)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from genrec.malloc import keep_freed_memory
    from genrec.registry import retriever_names
    from genrec.serve.app import create_app
    from genrec.serve.batching import BatchingConfig
    from genrec.serve.connections import uvicorn_config
    from genrec.serve.workers import (
        WorkerApp,
        serve_workers,
        torch_threads,
        use_short_gil_switch,
        use_torch_threads,
    )

    names = [n.strip() for n in args.retrievers.split(",") if n.strip()]
    unknown = [n for n in names if n not in retriever_names()]
    if not names or unknown:
        print(f"--retrievers: unknown {unknown or 'empty list'}; expected names from {retriever_names()}", file=sys.stderr)
        return 2
    if not (args.run_folder / "data").is_dir():
        print(f"run folder {args.run_folder} has no data/ folder; expected RUN/data with the dataset", file=sys.stderr)
        return 2
    try:
        batching = BatchingConfig(max_batch=args.max_batch, max_wait_s=args.max_wait_ms / 1000,
                                  parallel_from=args.parallel_from)
        limits = ServeLimits(**{limit.name: getattr(args, limit.name) for limit in fields(ServeLimits)})
        if args.workers < 1:
            raise ValueError(f"workers must be ≥ 1, got {args.workers}")
        threads = torch_threads(args.workers, args.threads)
    except ValueError as error:
        print(f"invalid option: {error}", file=sys.stderr)
        return 2
    if args.workers > 1:
        log.info("genrec serving %s (%s) on http://%s:%d/ with %d workers (each answers once its model is loaded)",
                 args.run_folder, ", ".join(names), args.host, args.port, args.workers)
        serve_workers(WorkerApp(args.run_folder, tuple(names), batching, limits, args.workers, threads),
                      args.host, args.port, log_level=args.log_level)
        return 0
    use_torch_threads(threads)
    use_short_gil_switch()
    keep_freed_memory()
    app = create_app(args.run_folder, names, batching=batching, limits=limits)
    log.info("genrec serving %s (%s) on http://%s:%d/ (OpenAPI schema at /openapi.json; 503 until the model is loaded)",
             args.run_folder, ", ".join(names), args.host, args.port)
    uvicorn.Server(uvicorn_config(app, args.host, args.port, limits, log_level=args.log_level)).run()
    return 0

