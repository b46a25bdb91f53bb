# Gatecord's container image: gatecord's wheel installed with the locked dependencies (hash-checked),
# run as an unprivileged user. Build it from the checkout's root:
#     docker build -t gatecord .
# deploy/compose.yaml builds and runs it (PostgreSQL, two shard processes, one web process).
# No container can be built on the CI machines: tests/test_deploy_replay.py replays the build and
# install steps below (the same commands, the same deploy/install.sh) in a clean venv.

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY bot ./bot
COPY cogs ./cogs
COPY gateway_client ./gateway_client
COPY sandbox ./sandbox
RUN python -m pip wheel --no-cache-dir --no-deps --wheel-dir /dist .

FROM python:3.11-slim
COPY requirements.lock deploy/install.sh /tmp/install/
COPY --from=build /dist /tmp/install/dist
RUN sh /tmp/install/install.sh /tmp/install/requirements.lock /tmp/install/dist /opt/gatecord && rm -rf /tmp/install
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/gatecord --shell /usr/sbin/nologin gatecord \
    && mkdir -p /var/lib/gatecord/data \
    && chown -R gatecord:gatecord /var/lib/gatecord
ENV PATH=/opt/gatecord/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    GATECORD_STORAGE__PATH=/var/lib/gatecord/data/gatecord.db \
    GATECORD_HTTP__HOST=0.0.0.0 \
    GATECORD_HTTP__PORT=8080
USER gatecord
WORKDIR /var/lib/gatecord
# the SQLite file when [storage] url is not set (one process); generated images kept on disk
VOLUME ["/var/lib/gatecord/data"]
# the web port: /send-data, status, /health, /ready, /metrics, /openapi.json
EXPOSE 8080
ENTRYPOINT ["gatecord"]
CMD ["run"]
