# The pipeline and the trainer (CPU torch; on a GPU host install the CUDA build of torch==2.13.0 instead):
#   docker build -t ccpipeline . && docker run --rm ccpipeline run --config configs/quickstart.yaml
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    RAY_USAGE_STATS_ENABLED=0

WORKDIR /app
COPY pyproject.toml README.md ./
COPY pipeline ./pipeline
COPY stages ./stages
COPY configs ./configs
# torch first, from PyTorch's CPU index, so that the train extra's torch==2.13.0 pin pulls no CUDA packages
RUN python -m pip install --upgrade pip \
 && python -m pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu \
 && python -m pip install ".[train]" \
 && pipeline fetch-models

ENTRYPOINT ["pipeline"]
CMD ["--help"]
