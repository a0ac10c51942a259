-- deployctl serve: the first schema (postgres). Times are ms since the Unix epoch; JSON is TEXT.
CREATE TABLE projects (
    name TEXT PRIMARY KEY,
    created_ms BIGINT NOT NULL
);

CREATE TABLE apps (
    project TEXT NOT NULL REFERENCES projects (name),
    name TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    PRIMARY KEY (project, name)
);

CREATE TABLE deployments (
    seq BIGSERIAL PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    project TEXT NOT NULL,
    app TEXT NOT NULL,
    status TEXT NOT NULL,
    request TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    stages TEXT NOT NULL DEFAULT '{}',
    result TEXT,
    error TEXT,
    claimed_by TEXT,
    heartbeat_ms BIGINT,
    created_ms BIGINT NOT NULL,
    started_ms BIGINT,
    finished_ms BIGINT,
    FOREIGN KEY (project, app) REFERENCES apps (project, name)
);
CREATE INDEX deployments_active ON deployments (project, app, status);
-- one running deployment per app, whoever claims it: the database says no to a second
CREATE UNIQUE INDEX deployments_one_running ON deployments (project, app) WHERE status = 'running';

CREATE TABLE events (
    id BIGSERIAL PRIMARY KEY,
    deployment_id TEXT NOT NULL REFERENCES deployments (id),
    seq BIGINT NOT NULL,
    body TEXT NOT NULL,
    UNIQUE (deployment_id, seq)
);

CREATE TABLE tokens (
    id TEXT PRIMARY KEY,
    hash TEXT NOT NULL UNIQUE,
    project TEXT NOT NULL,
    role TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL,
    revoked_ms BIGINT
);

CREATE TABLE audit (
    id BIGSERIAL PRIMARY KEY,
    at_ms BIGINT NOT NULL,
    request_id TEXT NOT NULL,
    token_id TEXT,
    action TEXT NOT NULL,
    project TEXT,
    app TEXT,
    deployment_id TEXT,
    status BIGINT NOT NULL,
    result TEXT NOT NULL
);
