FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY opsync opsync
COPY service service
COPY connectors connectors
COPY api api
COPY mappings mappings
RUN pip install --no-cache-dir .
EXPOSE 8000
CMD ["opsync", "serve", "--host", "0.0.0.0", "--port", "8000"]
