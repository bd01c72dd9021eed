# One image for every process of the system; docker-compose.yml picks the command.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONPATH=/app \
    DATA_DIR=/data

WORKDIR /app
# /data/mail: the development mail catcher's Maildir (its volume starts as a copy of this).
RUN useradd --create-home --uid 10001 app && mkdir -p /data/mail/cur /data/mail/new /data/mail/tmp \
    && chown -R app /data

COPY requirements/ requirements/
RUN pip install --no-cache-dir -r requirements/base.txt

COPY --chown=app . .
USER app

EXPOSE 8088 8089 5555 9108
ENV BIND_HOST=0.0.0.0
CMD ["python", "-m", "services.procfile", "auth_api"]
