"""The facts about SageMaker that the remote trainer checks against, kept in one place.

Sources: the SageMaker Python SDK's image registry table for ``kmeans`` version 1
(``image_uri_config/kmeans.json``, the table ``image_uris.retrieve("kmeans", region)`` reads in
SDK 2.x and 3.x), and the K-Means page of the SageMaker developer guide (instance types:
CPU recommended; single-GPU P2, P3, G4dn and G5 instances allowed). Read on 2026-11-30.
"""

from __future__ import annotations

# Region -> the account of the ECR registry that holds SageMaker's K-Means image, kmeans:1.
KMEANS_REGISTRIES: dict[str, str] = {
    "af-south-1": "455444449433",
    "ap-east-1": "286214385809",
    "ap-northeast-1": "351501993468",
    "ap-northeast-2": "835164637446",
    "ap-northeast-3": "364406365360",
    "ap-south-1": "991648021394",
    "ap-southeast-1": "475088953585",
    "ap-southeast-2": "712309505854",
    "ca-central-1": "469771592824",
    "cn-north-1": "390948362332",
    "cn-northwest-1": "387376663083",
    "eu-central-1": "664544806723",
    "eu-north-1": "669576153137",
    "eu-south-1": "257386234256",
    "eu-west-1": "438346466558",
    "eu-west-2": "644912444149",
    "eu-west-3": "749696950732",
    "me-south-1": "249704162688",
    "sa-east-1": "855470959533",
    "us-east-1": "382416733822",
    "us-east-2": "404615174143",
    "us-gov-west-1": "226302683700",
    "us-iso-east-1": "490574956308",
    "us-west-1": "632365934929",
    "us-west-2": "174872318107",
}

KMEANS_REPOSITORY = "kmeans"
KMEANS_TAG = "1"


def _sizes(family: str, sizes: str) -> set[str]:
    return {f"ml.{family}.{size}" for size in sizes.split()}


# The instance types SageMaker offers for K-Means training: the CPU families, and the GPU
# families in their single-GPU sizes ("only one GPU is used per instance").
TRAINING_INSTANCE_TYPES: frozenset[str] = frozenset(
    _sizes("m4", "xlarge 2xlarge 4xlarge 10xlarge 16xlarge")
    | _sizes("m5", "large xlarge 2xlarge 4xlarge 12xlarge 24xlarge")
    | _sizes("c4", "xlarge 2xlarge 4xlarge 8xlarge")
    | _sizes("c5", "xlarge 2xlarge 4xlarge 9xlarge 18xlarge")
    | _sizes("p2", "xlarge")
    | _sizes("p3", "2xlarge")
    | _sizes("g4dn", "xlarge 2xlarge 4xlarge 8xlarge 16xlarge")
    | _sizes("g5", "xlarge 2xlarge 4xlarge 8xlarge 16xlarge")
)

# Hosting: the same families, plus the small general-purpose sizes endpoints commonly use.
INFERENCE_INSTANCE_TYPES: frozenset[str] = TRAINING_INSTANCE_TYPES | frozenset(
    _sizes("t2", "medium large xlarge 2xlarge") | _sizes("m5", "large") | _sizes("c5", "large")
)
