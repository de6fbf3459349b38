"""The command line: parse, call the library, print. Nothing else lives here."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .hyperparameters import HYPERPARAMETERS


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except BrokenPipeError:
        # The reader went away (`kmeans-stream predict ... | head`): stop quietly, as cat does.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (ValueError, OSError, ImportError) as exc:
        print(f"kmeans-stream {args.command}: error: {exc}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kmeans-stream", description="Amazon SageMaker's streaming K-Means, run locally."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="run the SageMaker K-Means exercise end to end")
    demo.add_argument("--out", type=Path, default=Path("demo_output"))
    demo.add_argument("--backend", default="auto")
    demo.set_defaults(run=_demo)

    fit = commands.add_parser("fit", help="fit on a CSV, RecordIO, .npy, folder or s3:// source")
    fit.add_argument("source")
    fit.add_argument("--model", type=Path, required=True, help="where to write model.tar.gz")
    fit.add_argument(
        "--hyperparameters", type=Path, help="a SageMaker hyperparameters.json (strings)"
    )
    for hp in HYPERPARAMETERS:
        fit.add_argument(f"--{hp.name.replace('_', '-')}", dest=hp.name, help=hp.doc)
    fit.set_defaults(run=_fit)

    predict = commands.add_parser("predict", help="closest_cluster,distance_to_cluster as CSV")
    predict.add_argument("model")
    predict.add_argument("source")
    predict.set_defaults(run=_predict)

    convert = commands.add_parser("convert", help="stream between CSV, RecordIO-protobuf, .npy")
    convert.add_argument("src")
    convert.add_argument("dst")
    convert.add_argument("--skip-header", action="store_true")
    convert.set_defaults(run=_convert)

    train = commands.add_parser(
        "train", help="SageMaker's training job: read /opt/ml (or $KMEANS_STREAM_OPT_ML), "
        "write its model/ or output/failure"
    )
    train.set_defaults(run=_train)

    serve = commands.add_parser(
        "serve", help="SageMaker's endpoint: GET /ping and POST /invocations on port 8080"
    )
    serve.add_argument("--model", type=Path, help="model.tar.gz, model_algo-1 or a folder "
                       "(default: $KMEANS_STREAM_OPT_ML/model, else /opt/ml/model)")
    serve.add_argument("--host", default="0.0.0.0")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--max-payload-mb", type=int, default=6,
                       help="largest request body in MiB (SageMaker's MaxPayloadInMB)")
    serve.add_argument("--threads", type=int, default=4)
    serve.set_defaults(run=_serve)
    return parser


def _demo(args: argparse.Namespace) -> int:
    from .demo import run

    run(args.out, backend=args.backend)
    return 0


def _fit(args: argparse.Namespace) -> int:
    from .estimator import KMeans

    strings = json.loads(args.hyperparameters.read_text()) if args.hyperparameters else {}
    strings.update({hp.name: getattr(args, hp.name) for hp in HYPERPARAMETERS
                    if getattr(args, hp.name) is not None})
    model = KMeans.from_sagemaker_hyperparameters(strings).fit(args.source)
    model.save(args.model)
    print(f"train:msd={model.train_msd_:.6g} k={model.k} feature_dim={model.n_features_in_}")
    print(f"model: {args.model}")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from . import load
    from .io import iter_batches

    model = load(args.model)
    for batch in iter_batches(args.source, 65536):
        labels, distance = model.predict_with_distance(batch)
        for label, dist in zip(labels, distance, strict=True):
            print(f"{float(label)},{float(dist):.9g}")
    return 0


def _convert(args: argparse.Namespace) -> int:
    from .io import convert

    convert(args.src, args.dst, skip_header=args.skip_header)
    print(f"wrote {args.dst}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from .container import train

    return train()


def _serve(args: argparse.Namespace) -> int:
    from .serve import serve

    serve(args.model, args.host, args.port, args.max_payload_mb, args.threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
