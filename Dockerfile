# Build, push to ECR, then train with image_uri=<account>.dkr.ecr.<region>.amazonaws.com/kmeans-stream:0.1.0:
#   docker build -t kmeans-stream:0.1.0 . && aws ecr create-repository --repository-name kmeans-stream && aws ecr get-login-password | docker login --username AWS --password-stdin <account>.dkr.ecr.<region>.amazonaws.com && docker tag kmeans-stream:0.1.0 <account>.dkr.ecr.<region>.amazonaws.com/kmeans-stream:0.1.0 && docker push <account>.dkr.ecr.<region>.amazonaws.com/kmeans-stream:0.1.0
FROM python:3.11-slim

# Log lines reach CloudWatch as they are printed.
ENV PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /opt/program
COPY pyproject.toml README.md ./
COPY kmeans_stream ./kmeans_stream
RUN pip install --no-cache-dir ".[numba,serve]"

EXPOSE 8080
# Exec form, no init process: SageMaker runs `docker run <image> train` (or `serve`) and sends
# SIGTERM straight to the command.
ENTRYPOINT ["kmeans-stream"]
