CREATE TABLE notes (
    id bigserial PRIMARY KEY,
    token text NOT NULL UNIQUE
);
