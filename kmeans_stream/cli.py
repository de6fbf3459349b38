"""The command line: parse, call the library, print. Nothing else lives here.

Every failure is one line on stderr, ``kmeans-stream <command>: error: <message>``, naming the
file, folder or URI concerned, and an exit status a script can rely on (`EXIT_STATUS`);
``--debug`` raises it instead, for the traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from . import __version__, _progress
from ._sampling import BottomK
from .exceptions import DataFormatError, InvalidHyperparameterError
from .hyperparameters import HYPERPARAMETERS

EXIT_STATUS = """\
exit status:
  0    success
  1    the data or the model is wrong (malformed, of another width, empty), a value out of
       range, or any other failure
  2    usage: an unknown option, a missing argument, an invalid hyperparameter value
  3    a missing optional dependency (the message gives the pip command)
  4    a file, folder or S3 object missing or not readable or writable; S3 credentials or
       access refused; an address that cannot be bound
  130  interrupted (Ctrl-C)
"""

_ROWS = 65_536  # rows read per batch by predict and evaluate
_PREDICTIONS = ("closest_cluster", "distance_to_cluster")
_MEDIA = {"json": "application/json", "jsonlines": "application/jsonlines"}


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except BrokenPipeError:
        # The reader went away (`kmeans-stream predict ... | head`): stop quietly, as cat does.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        if args.debug:
            raise
        print(f"kmeans-stream {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.debug:
            raise
        status, message = _failure(exc)
        if isinstance(exc, DataFormatError) and ", line 1: " in message and \
                getattr(args, "skip_header", True) is False:
            message += " (a header line? --skip-header drops it)"
        print(f"kmeans-stream {args.command}: error: {message}", file=sys.stderr)
        return status


def _failure(exc: Exception) -> tuple[int, str]:
    """The exit status and the one-line message of a failure."""
    message = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, ImportError):
        return 3, message
    if any(cls.__module__.startswith("botocore") for cls in type(exc).__mro__):
        status = 4
        if type(exc).__name__ == "NoCredentialsError":
            message += (" (configure AWS credentials: aws configure, AWS_PROFILE, or "
                        "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)")
    elif isinstance(exc, OSError):
        status = 4
        if exc.filename is not None and exc.strerror:
            return status, f"{exc.filename}: {exc.strerror}"
    elif isinstance(exc, InvalidHyperparameterError):  # about an option, not a path
        return 2, message
    elif isinstance(exc, ValueError):
        status = 1
    else:
        status = 1
        message = f"{type(exc).__name__}: {message} (run with --debug for the traceback)"
    path = getattr(exc, "cli_path", None)
    return status, message if path is None or path in message else f"{path}: {message}"


@contextlib.contextmanager
def _about(path: Any) -> Iterator[None]:
    """Name `path` in the message of a failure inside, unless the message already does."""
    try:
        yield
    except Exception as exc:
        if getattr(exc, "cli_path", None) is None:
            exc.cli_path = "<stdin>" if path == "-" else os.fspath(path)
        raise


def _input(path: str) -> Any:
    """A path as given, or stdin (binary) for ``-``."""
    return sys.stdin.buffer if path == "-" else path


def _source(path: str, skip_header: bool) -> Any:
    from .io.sources import as_source

    return as_source(_input(path), skip_header=skip_header)


def _check_folder(path: str) -> None:
    """Fail before the work when the file `path` could not be written for want of its folder."""
    folder = os.path.dirname(path) or os.curdir
    if not os.path.isdir(path) and not os.path.isdir(folder):
        raise FileNotFoundError(errno.ENOENT, "No such folder", folder)


@contextlib.contextmanager
def _output(path: str) -> Iterator[BinaryIO]:
    """stdout for ``-``, else the file written whole or not at all."""
    if path == "-":
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    from .io._atomic import atomic_write

    with atomic_write(path) as out:
        yield out


def _hyperparameters(args: argparse.Namespace) -> dict[str, str]:
    """SageMaker's string map: the --hyperparameters file, then the options; verbose from
    --quiet unless given."""
    strings = {}
    if args.hyperparameters:
        with _about(args.hyperparameters), open(args.hyperparameters) as file:
            strings = json.load(file)
    strings.update({hp.name: getattr(args, hp.name) for hp in HYPERPARAMETERS
                    if getattr(args, hp.name, None) is not None})
    if args.quiet:
        strings["verbose"] = "0"
    strings.setdefault("verbose", "1")
    return strings


# ----------------------------------------------------------------------------- commands


def _demo(args: argparse.Namespace) -> int:
    from .demo import run

    run(args.out, backend=args.backend)
    return 0


def _fit(args: argparse.Namespace) -> int:
    from .estimator import KMeans

    model = KMeans.from_sagemaker_hyperparameters(_hyperparameters(args))
    _check_folder(args.model)
    started = time.perf_counter()
    with _about(args.source):
        model.fit(_source(args.source, args.skip_header))
    seconds = time.perf_counter() - started
    with _about(args.model):
        written = model.save(args.model)
    epochs = getattr(model, "n_iter_", None) or model.epochs
    seen = getattr(model, "n_samples_seen_", None)  # not known of a SageMaker job's fit
    rows = "" if seen is None else f"{seen // epochs:,} rows x {epochs} epoch{'s' * (epochs > 1)} "
    print(f"fit: {rows}in {seconds:.2f} s, train:msd={model.train_msd_:.6g}, k={model.k}, "
          f"feature_dim={model.n_features_in_}; model: {written}")
    return 0


def _load(path: str, backend: str) -> Any:
    from . import load

    with _about(path):
        return load(path).set_params(backend=backend)


def _predict(args: argparse.Namespace) -> int:
    from .io.sources import iter_batches

    if args.header and args.format != "csv":
        args.parser.error("--header goes with --format csv only")
    model = _load(args.model, args.backend)
    with _output(args.output) as out, _progress.verbose_logging(not args.quiet), \
            _about(args.source), _progress.reading(_input(args.source), "predict") as (data, count):
        writer = _Predictions(out, args.format, args.header)
        for X in count(iter_batches(data, _ROWS, skip_header=args.skip_header)):
            writer.write(*model.predict_with_distance(X))
        writer.close()
    return 0


class _Predictions:
    """closest_cluster and distance_to_cluster, a batch at a time: ``--format json`` and
    ``jsonlines`` are SageMaker's answers exactly (float32 values, so ``4.0``); ``csv`` gives the
    cluster as an integer (SageMaker's own CSV answer says ``4.0``) and SageMaker's distance."""

    def __init__(self, out: BinaryIO, fmt: str, header: bool) -> None:
        self.out, self.fmt, self.rows = out, fmt, 0
        if header:
            out.write(",".join(_PREDICTIONS).encode() + b"\n")
        if fmt == "json":
            out.write(b'{"predictions":[')

    def write(self, labels: np.ndarray, distance: np.ndarray) -> None:
        from .io.inference import encode_response

        if self.fmt == "csv":
            pairs = zip(labels.tolist(), distance.astype(np.float32).tolist(), strict=True)
            text = "".join(f"{label},{dist!r}\n" for label, dist in pairs).encode()
        else:
            text = encode_response(labels, distance, _MEDIA[self.fmt])
            if self.fmt == "json":  # the items of one {"predictions":[...]} document
                text = (b"," if self.rows else b"") + text[len(b'{"predictions":['):-2]
            else:
                text += b"\n"
        self.out.write(text)
        self.rows += len(labels)

    def close(self) -> None:
        if self.fmt == "json":
            self.out.write(b"]}\n")


def _evaluate(args: argparse.Namespace) -> int:
    from .io.sources import iter_batches

    model = _load(args.model, args.backend)
    k = len(model.cluster_centers_)
    sizes, ssd, rows = np.zeros(k, dtype=np.int64), 0.0, 0
    sample = _Sample(args.sample_size, np.random.default_rng(args.random_state))
    with _progress.verbose_logging(not args.quiet), _about(args.source), \
            _progress.reading(_input(args.source), "evaluate") as (data, count):
        for X in count(iter_batches(data, _ROWS, skip_header=args.skip_header)):
            labels, distance = model.predict_with_distance(X)
            sizes += np.bincount(labels, minlength=k)
            ssd += float(distance @ distance)
            rows += len(X)
            sample.add(X, labels)
        if not rows:
            raise ValueError("no rows to evaluate")
    report = {"rows": rows, "msd": ssd / rows, "ssd": ssd, **sample.silhouette(),
              "cluster_sizes": sizes.tolist()}
    if args.format == "json":
        print(json.dumps(report))
        return 0
    scored = report["silhouette_rows"]
    on = f"all {rows:,} rows" if scored == rows else f"a sample of {scored:,} of {rows:,} rows"
    silhouette = "-" if report["silhouette"] is None else f"{report['silhouette']:.4f}"
    print(f"rows        {rows:,}\nmsd         {report['msd']:.6g}\nssd         {ssd:.6g}\n"
          f"silhouette  {silhouette} (on {on})\ncluster     size")
    print("\n".join(f"{i:7d}     {size:,}" for i, size in enumerate(report["cluster_sizes"])))
    return 0


class _Sample(BottomK):
    """A uniform sample of a stream's rows with their labels, for the silhouette."""

    def silhouette(self) -> dict[str, Any]:
        from .metrics import silhouette_or_nan

        if self.columns is None:
            return {"silhouette": None, "silhouette_rows": 0}
        X, labels = self.columns
        score = silhouette_or_nan(X, labels)
        return {"silhouette": None if np.isnan(score) else score,
                "silhouette_rows": len(labels)}


def _select_k(args: argparse.Namespace) -> int:
    from .hyperparameters import from_strings
    from .selection import select_k

    params = from_strings({**_hyperparameters(args), "verbose": "0"})
    seed = params.pop("random_state", None)
    if args.plot:
        _check_folder(args.plot)
    with _about(args.source):
        selection = select_k(_source(args.source, args.skip_header),
                             range(args.k_min, args.k_max + 1), args.methods,
                             sample_size=args.sample_size, random_state=seed, **params)
    print(json.dumps(selection.to_dict()) if args.format == "json" else selection.table())
    if args.plot:
        with _about(args.plot):
            print(f"plot: {selection.plot(args.plot)}", file=sys.stderr)
    return 0


def _convert(args: argparse.Namespace) -> int:
    from .io import convert

    started = time.perf_counter()
    with _about(args.src):
        rows = convert(_input(args.src), args.dst, skip_header=args.skip_header,
                       verbose=not args.quiet)
    print(f"convert: {rows:,} rows to {args.dst} in {time.perf_counter() - started:.2f} s")
    return 0


def _bench(args: argparse.Namespace) -> int:
    from . import backends
    from .estimator import KMeans

    rng = np.random.default_rng(0)
    centers = rng.uniform(-10, 10, size=(args.k, args.features))
    X = (centers[rng.integers(0, args.k, args.rows)]
         + rng.normal(size=(args.rows, args.features))).astype(np.float32)
    backend = backends.lookup(args.backend).name
    model = KMeans(k=args.k, backend=backend, random_state=0)
    warm_up = _seconds(lambda: model.fit(X[: 4 * args.k + 1000]).predict(X[:1000]))
    fit = min(_seconds(lambda: model.fit(X)) for _ in range(args.repeat))
    predict = min(_seconds(lambda: model.predict(X)) for _ in range(args.repeat))
    report = {"version": __version__, "rows": args.rows, "features": args.features, "k": args.k,
              "backend": backend, "cpus": os.cpu_count(), "warm_up_s": warm_up, "fit_s": fit,
              "predict_s": predict, "repeat": args.repeat}
    if args.format == "json":
        print(json.dumps(report))
        return 0
    print(f"kmeans-stream {__version__} bench: {args.rows:,} rows x {args.features} features "
          f"(float32), k={args.k}, backend={backend}, {os.cpu_count()} CPUs\n"
          f"warm-up  {warm_up:8.3f} s  (first small fit and predict: kernels compiled or "
          f"loaded)\n"
          f"fit      {fit:8.3f} s  ({args.rows / fit:,.0f} rows/s, best of {args.repeat})\n"
          f"predict  {predict:8.3f} s  ({args.rows / predict:,.0f} rows/s, best of "
          f"{args.repeat})")
    return 0


def _seconds(call: Any) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def _train(args: argparse.Namespace) -> int:
    from .container import train

    return train()


def _serve(args: argparse.Namespace) -> int:
    from .serve import serve

    serve(args.model, args.host, args.port, args.max_payload_mb, args.threads)
    return 0


# ----------------------------------------------------------------------------- the parser


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kmeans-stream", description="Amazon SageMaker's streaming K-Means, run locally.",
        epilog=EXIT_STATUS, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _common_options(parser, suppress=False)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, run: Any, text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=text, description=text, epilog=EXIT_STATUS,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
        _common_options(sub, suppress=True)
        sub.set_defaults(run=run, parser=sub)
        return sub

    demo = command("demo", _demo, "run the SageMaker K-Means exercise end to end")
    demo.add_argument("--out", type=Path, default=Path("demo_output"))
    demo.add_argument("--backend", default="auto")

    fit = command("fit", _fit, "fit on a CSV, RecordIO, .npy, folder, manifest or s3:// source "
                  "(- reads stdin) and write model.tar.gz")
    fit.add_argument("source")
    fit.add_argument("--model", required=True, help="the model.tar.gz to write (or a folder)")
    _skip_header(fit)
    _hyperparameter_options(fit)

    predict = command("predict", _predict, "closest_cluster and distance_to_cluster of each row")
    predict.add_argument("model", help="model.tar.gz, model_algo-1, a folder or an s3:// URI")
    predict.add_argument("source", help="the rows (- reads stdin)")
    predict.add_argument("--output", "-o", default="-", help="where to write (default -: stdout)")
    predict.add_argument("--format", choices=("csv", "json", "jsonlines"), default="csv",
                         help="csv: '4,5.26...' per row, the cluster as an integer; json, "
                         "jsonlines: SageMaker's response bodies exactly (clusters as 4.0)")
    predict.add_argument("--header", action="store_true",
                         help="csv: a first line 'closest_cluster,distance_to_cluster'")
    _skip_header(predict)
    _backend(predict)

    evaluate = command("evaluate", _evaluate, "msd, ssd, cluster sizes and the silhouette of a "
                       "sample of the rows under a model")
    evaluate.add_argument("model")
    evaluate.add_argument("source", help="the rows (- reads stdin)")
    evaluate.add_argument("--sample-size", type=int, default=10_000,
                          help="rows the silhouette is computed on (default 10000)")
    evaluate.add_argument("--random-state", type=int, default=0, help="seed of the sample")
    evaluate.add_argument("--format", choices=("text", "json"), default="text")
    _skip_header(evaluate)
    _backend(evaluate)

    select = command("select-k", _select_k, "fit k = --k-min..--k-max and say which k the "
                     "elbow, silhouette and gap methods suggest")
    select.add_argument("source")
    select.add_argument("--k-min", type=int, default=2)
    select.add_argument("--k-max", type=int, default=10)
    select.add_argument("--methods", nargs="+", default=["elbow", "silhouette", "gap"],
                        choices=("elbow", "silhouette", "gap"))
    select.add_argument("--sample-size", type=int, default=10_000,
                        help="rows the silhouette and the gap are computed on")
    select.add_argument("--plot", help="a PNG of the curves (needs matplotlib)")
    select.add_argument("--format", choices=("text", "json"), default="text")
    _skip_header(select)
    _hyperparameter_options(select, leave_out=("k",))

    convert = command("convert", _convert, "stream rows between CSV, RecordIO-protobuf and "
                      ".npy (the extension of DST names the format; - reads stdin)")
    convert.add_argument("src")
    convert.add_argument("dst")
    _skip_header(convert)

    bench = command("bench", _bench, "time a fit and a predict on generated data here")
    bench.add_argument("--rows", type=int, default=200_000)
    bench.add_argument("--features", type=int, default=16)
    bench.add_argument("--k", type=int, default=10)
    bench.add_argument("--backend", default="auto")
    bench.add_argument("--repeat", type=int, default=3)
    bench.add_argument("--format", choices=("text", "json"), default="text")

    command("train", _train, "SageMaker's training job: read /opt/ml (or "
            "$KMEANS_STREAM_OPT_ML), write its model/ or output/failure")

    serve = command("serve", _serve, "SageMaker's endpoint: GET /ping and POST /invocations "
                    "on port 8080")
    serve.add_argument("--model", help="model.tar.gz, model_algo-1 or a folder "
                       "(default: $KMEANS_STREAM_OPT_ML/model, else /opt/ml/model)")
    serve.add_argument("--host", default="0.0.0.0")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--max-payload-mb", type=int, default=6,
                       help="largest request body in MiB (SageMaker's MaxPayloadInMB)")
    serve.add_argument("--threads", type=int, default=4)
    return parser


def _common_options(parser: argparse.ArgumentParser, suppress: bool) -> None:
    """--quiet and --debug, before or after the command (a command's own default must not
    undo the value given before it)."""
    default = argparse.SUPPRESS if suppress else False
    parser.add_argument("--quiet", "-q", action="store_true", default=default,
                        help="no progress bars or log lines (verbose=0)")
    parser.add_argument("--debug", action="store_true", default=default,
                        help="raise errors with their traceback")


def _skip_header(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--skip-header", action="store_true",
                        help="drop the first line of each CSV file")


def _backend(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", default="auto", help="the kernels that compute the "
                        "distances (default auto: the fastest installed)")


def _hyperparameter_options(parser: argparse.ArgumentParser, leave_out: tuple = ()) -> None:
    parser.add_argument("--hyperparameters", help="a SageMaker hyperparameters.json (strings)")
    for hp in HYPERPARAMETERS:
        if hp.name not in leave_out:
            parser.add_argument(f"--{hp.name.replace('_', '-')}", dest=hp.name, help=hp.doc)


if __name__ == "__main__":
    sys.exit(main())
