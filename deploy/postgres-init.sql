-- Run once by the postgres image on an empty data volume (deploy/compose.yaml): the Dagster instance's
-- storage lives in database "dagster" (POSTGRES_DB), the project's tables in their own database.
CREATE DATABASE warehouse;
