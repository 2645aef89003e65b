# fireworq-py on its embedded SQLite store, listening on 0.0.0.0:8080.
#   docker build -t fireworq-py .
#   docker run -p 8080:8080 -v fireworq-data:/var/lib/fireworq fireworq-py
# Configure with FIREWORQ_* environment variables (docs/configuration.md), e.g.
#   -e FIREWORQ_DRIVER=mysql -e FIREWORQ_MYSQL_DSN='user:pass@tcp(db:3306)/fireworq'
# The base is pinned to the Python release the project is tested and measured with.
FROM python:3.11.7-slim-bookworm

ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="fireworq-py" \
      org.opencontainers.image.description="HTTP job queue daemon, a drop-in replacement for Fireworq 1.5" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="docker.io/library/python:3.11.7-slim-bookworm"

WORKDIR /src
COPY pyproject.toml LICENSE README.md ./
COPY fireworq ./fireworq
COPY twisted ./twisted
# Build the twistd plugin cache now: the installed tree is read-only for the daemon's user.
RUN pip install --no-cache-dir . \
    && python -c "from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))" \
    && rm -rf /src \
    && useradd --system --uid 10001 --user-group --home-dir /var/lib/fireworq --create-home fireworq

USER 10001:10001
WORKDIR /var/lib/fireworq
VOLUME /var/lib/fireworq
ENV FIREWORQ_BIND=0.0.0.0:8080 \
    FIREWORQ_SQLITE_PATH=/var/lib/fireworq/fireworq.sqlite3
EXPOSE 8080
# Liveness only (/healthz answers while the database is away; /readyz is for readiness),
# on the port of FIREWORQ_BIND.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; port = os.environ.get('FIREWORQ_BIND', ':8080').rpartition(':')[2]; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % port, timeout=4)"]
STOPSIGNAL SIGTERM
# In the foreground, without twistd.pid; SIGTERM stops it gracefully.
ENTRYPOINT ["twistd", "--nodaemon", "--pidfile=", "fireworq"]
