-- Who is playing: how each config's servers are asked (A2S, the Minecraft ping, a console
-- command), and each session's last answer from its host's heartbeat (NULL: unknown).

ALTER TABLE game_configs
    ADD COLUMN player_query jsonb;

ALTER TABLE session_samples
    ADD COLUMN players_online integer,
    ADD COLUMN players_max integer,
    ADD COLUMN player_names jsonb;
