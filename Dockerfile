# Mini-Jenkin image: one image for the API, workers, the dispatcher and
# one-off commands (`migrate`, `token create`, `doctor`).
#
#   docker build -t minijenkin .
#   docker run --rm minijenkin --help
#
# The build stage turns the source into a wheel, and the runtime stage
# installs that wheel with the pinned dependency tree of constraints.txt,
# the same tree the tests run on.

FROM python:3.12-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY minijenkin ./minijenkin
RUN python -m pip wheel --no-deps --wheel-dir /wheels .

FROM python:3.12-slim-bookworm
# Workers clone repositories with git and run steps with bash.
RUN apt-get update \
    && apt-get install -y --no-install-recommends git ca-certificates openssh-client util-linux \
    && rm -rf /var/lib/apt/lists/*
COPY constraints.txt /tmp/constraints.txt
COPY --from=build /wheels /wheels
RUN python -m pip install --no-cache-dir --constraint /tmp/constraints.txt /wheels/minijenkin-*.whl \
    && rm -rf /wheels /tmp/constraints.txt

# Steps run as this unprivileged user, never as root.
RUN useradd --create-home --home-dir /var/lib/minijenkin --uid 10001 minijenkin
USER minijenkin
WORKDIR /var/lib/minijenkin
# Created here so that a named volume mounted on it is owned by minijenkin.
RUN mkdir /var/lib/minijenkin/data

ENV MINIJENKIN_HOST=0.0.0.0 \
    MINIJENKIN_PORT=3000 \
    MINIJENKIN_DATA_DIR=/var/lib/minijenkin/data \
    PYTHONUNBUFFERED=1
EXPOSE 3000

# Healthy when the API answers /healthz, which also checks the database.
# Worker containers override this check (see docker-compose.yml).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:3000/healthz', timeout=4)"]

ENTRYPOINT ["minijenkin"]
CMD ["api"]
