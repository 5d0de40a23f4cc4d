# The service's image: worker, codec server and the one-shot set-up steps
# (docker-compose.yml runs each with its own command). Slim, pinned, non-root; the
# dependencies are exactly requirements.lock (hashes required): one lock for dev (dev.py), CI
# and this image, so it carries the test tools too (the price of one lock). Generated from
# pyproject.toml by (it keeps the versions it has unless told to upgrade):
#   uv pip compile pyproject.toml --extra dev --python-version 3.11 \
#     --python-platform x86_64-manylinux_2_28 --generate-hashes --no-header -o requirements.lock
# Pin the base by digest as well in your registry mirror (`python:3.11.14-slim-bookworm@sha256:...`)
# once you have pulled it; tests/test_compose.py accepts either form, never a floating tag.
FROM python:3.11.14-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONPATH=/app

RUN groupadd --system --gid 10001 msr \
    && useradd --system --uid 10001 --gid msr --no-create-home --home-dir /app \
       --shell /usr/sbin/nologin msr

WORKDIR /app
COPY requirements.lock ./
RUN pip install --require-hashes --no-deps -r requirements.lock

# The code, read-only for the service's user (owned by root).
COPY worker.py starter.py ./
COPY missed_session ./missed_session
COPY workflows ./workflows
COPY activities ./activities

USER msr:msr
# The worker's Prometheus endpoint (docker-compose.yml: MSR_METRICS_HOST=0.0.0.0).
EXPOSE 9464
CMD ["python", "worker.py"]
