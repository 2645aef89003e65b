# fireworq-py on its embedded SQLite store, listening on 0.0.0.0:8080.
#   docker build -t fireworq-py .
#   docker run -p 8080:8080 -v fireworq-data:/var/lib/fireworq fireworq-py
# Configure with FIREWORQ_* environment variables (docs/configuration.md), e.g.
#   -e FIREWORQ_DRIVER=mysql -e FIREWORQ_MYSQL_DSN='user:pass@tcp(db:3306)/fireworq'
FROM python:3.11-slim

WORKDIR /src
COPY setup.py setup.cfg README.md ./
COPY fireworq ./fireworq
COPY twisted ./twisted
# Build the twistd plugin cache now: the installed tree is read-only for the daemon's user.
RUN pip install --no-cache-dir . \
    && python -c "from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))" \
    && rm -rf /src \
    && useradd --system --home-dir /var/lib/fireworq --create-home fireworq

USER fireworq
WORKDIR /var/lib/fireworq
VOLUME /var/lib/fireworq
ENV FIREWORQ_BIND=0.0.0.0:8080 \
    FIREWORQ_SQLITE_PATH=/var/lib/fireworq/fireworq.sqlite3
EXPOSE 8080
STOPSIGNAL SIGTERM
# In the foreground, without twistd.pid; SIGTERM stops it gracefully.
ENTRYPOINT ["twistd", "--nodaemon", "--pidfile=", "fireworq"]
