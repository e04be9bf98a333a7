# The bridge image for `docker compose up` (see compose.yaml).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY bridge ./bridge
RUN pip install --no-cache-dir .
ENV PRINTBRIDGE_DB=/data/printbridge.db \
    PRINTBRIDGE_HTTP_HOST=0.0.0.0
VOLUME ["/data"]
EXPOSE 8000
CMD ["printbridge", "serve"]
