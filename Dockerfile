# statekeep's dashboard (statekeep serve), for SQLite or PostgreSQL.
#   docker build -t statekeep .
#   docker run -p 8000:8000 -e STATEKEEP_URL=postgresql://... -e STATEKEEP_TOKEN=... statekeep
# The wheel's build hook (hatch_build.py) runs `npm ci` for the Datastar browser
# client, so the wheel is built in a stage with node, and installed without it.
FROM node:20-slim AS client
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts

FROM python:3.11-slim AS wheel
WORKDIR /src
COPY --from=client /src/node_modules ./node_modules
COPY . .
RUN pip install --no-cache-dir build && python -m build --wheel --outdir /dist

FROM python:3.11-slim
COPY --from=wheel /dist /dist
RUN WHEEL="$(ls /dist/*.whl)" && pip install --no-cache-dir "${WHEEL}[web,postgresql]" \
    && rm -rf /dist \
    && useradd --create-home --uid 10001 statekeep
USER statekeep
WORKDIR /home/statekeep
ENV PYTHONUNBUFFERED=1
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s \
    CMD python -c "import urllib.request, sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status != 200)"
# STATEKEEP_URL and STATEKEEP_TOKEN come from the environment (beyond loopback a token is required)
CMD ["statekeep", "serve", "--host", "0.0.0.0"]
