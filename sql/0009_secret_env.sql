-- Config environment values an operator marked secret (`--secret-env KEY=VALUE`): the values
-- stay in `env` (the game gets them), these keys are never shown to any role (`***`).

ALTER TABLE game_configs
    ADD COLUMN secret_env_keys jsonb NOT NULL DEFAULT '[]'::jsonb;
