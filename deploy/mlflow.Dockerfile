# The MLflow server of compose.yaml: the stock image plus what it lacks for basic auth on PostgreSQL,
# Flask-WTF (the `auth` extra) and psycopg. Pins as in constraints.txt.
FROM ghcr.io/mlflow/mlflow:v3.17.2
RUN pip install --no-cache-dir "mlflow[auth]==3.17.2" "psycopg[binary]==3.3.9"
# The basic-auth app reads its settings from this file only. Its users live in PostgreSQL, not in
# a SQLite file inside the container; the password comes from PGPASSWORD (libpq), not from here.
# The admin name and password come from MLFLOW_AUTH_ADMIN_USERNAME / MLFLOW_AUTH_ADMIN_PASSWORD.
# auth_cache_ttl_seconds: without it every request re-hashes the password (PBKDF2), and logging one
# model is hundreds of requests; a password change reaches other workers within the TTL.
ARG AUTH_DATABASE_URI=postgresql+psycopg://mlflow@postgres:5432/mlflow_auth
RUN mkdir -p /etc/mlflow && printf '%s\n' '[mlflow]' \
      'default_permission = READ' \
      "database_uri = ${AUTH_DATABASE_URI}" \
      'authorization_function = mlflow.server.auth:authenticate_request_basic_auth' \
      'auth_cache_ttl_seconds = 60' \
      > /etc/mlflow/basic_auth.ini
ENV MLFLOW_AUTH_CONFIG_PATH=/etc/mlflow/basic_auth.ini
EXPOSE 5000
