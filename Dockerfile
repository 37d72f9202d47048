# The data pipeline (no trainer): docker build -t ccpipeline . && docker run --rm ccpipeline run --config configs/quickstart.yaml
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    RAY_USAGE_STATS_ENABLED=0

WORKDIR /app
COPY pyproject.toml README.md ./
COPY pipeline ./pipeline
COPY stages ./stages
COPY configs ./configs
RUN python -m pip install --upgrade pip && python -m pip install .

ENTRYPOINT ["pipeline"]
CMD ["--help"]
