-- Day two: games, configs and deployments can be deleted. Their rows stay (ended sessions and
-- archived logs still name them), marked deleted (games, configs) or retired (deployments),
-- and left out of every list; a deleted name can be used again.

ALTER TABLE games ADD COLUMN deleted_at timestamptz;
ALTER TABLE games DROP CONSTRAINT games_name_key;
CREATE UNIQUE INDEX games_name_key ON games (name) WHERE deleted_at IS NULL;

ALTER TABLE game_configs ADD COLUMN deleted_at timestamptz;
ALTER TABLE game_configs DROP CONSTRAINT game_configs_game_id_name_key;
CREATE UNIQUE INDEX game_configs_game_id_name_key ON game_configs (game_id, name)
    WHERE deleted_at IS NULL;
