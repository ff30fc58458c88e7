# The pace-concepts service (no torch: the service never imports the SDK).
# Built and run by docker-compose.yml against the official pgvector image.
FROM python:3.11-slim

WORKDIR /app
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    PACE_DATA_DIR=/data PACE_HOST=0.0.0.0 PACE_PORT=8000

# Service dependencies only (the project's own list also names the SDK's torch).
RUN pip install --no-cache-dir \
    "fastapi>=0.115" "uvicorn>=0.30" "sqlalchemy>=2.0.30" "psycopg[binary]>=3.2" \
    "pgvector>=0.5,<0.6" "alembic>=1.13" "pydantic>=2.7" "pydantic-settings>=2.3" \
    "python-multipart>=0.0.9" "platformdirs>=4" "safetensors>=0.4" "numpy>=1.26" "httpx>=0.27"

COPY pyproject.toml README.md alembic.ini ./
COPY service ./service
COPY sdk ./sdk
COPY cli ./cli
COPY migrations ./migrations
# Editable, so pace_service finds migrations/ next to it.
RUN pip install --no-cache-dir --no-deps -e .

VOLUME ["/data"]
EXPOSE 8000
CMD ["python", "-m", "pace_service", "serve"]
