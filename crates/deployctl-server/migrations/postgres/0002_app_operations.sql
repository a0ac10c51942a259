-- deployctl serve: app operations (postgres). A deployment has a kind (deploy, redeploy, scale,
-- rollback, destroy) and its parameters (JSON); an app keeps its current config: the request
-- (config, image, target, overlay) of its last successful deploy or redeploy.
ALTER TABLE deployments ADD COLUMN kind TEXT NOT NULL DEFAULT 'deploy';
ALTER TABLE deployments ADD COLUMN params TEXT NOT NULL DEFAULT '{}';
ALTER TABLE apps ADD COLUMN current TEXT;
ALTER TABLE apps ADD COLUMN current_deployment TEXT;
ALTER TABLE apps ADD COLUMN current_ms BIGINT;
CREATE INDEX deployments_of_app ON deployments (project, app, seq);
CREATE INDEX audit_of_project ON audit (project, at_ms);
