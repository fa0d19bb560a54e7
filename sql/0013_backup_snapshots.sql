-- Whether a backup was read from a copy-on-write snapshot (the game's saves paused only while
-- it was taken) rather than from the live files (paused while they were read).

ALTER TABLE backups
    ADD COLUMN snapshot boolean NOT NULL DEFAULT false;
