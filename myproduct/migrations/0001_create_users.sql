-- The users of api/v0/users. Applied once by `apiphant db migrate .`; change the table with
-- a new file (0002_...), never by editing this one once applied.
CREATE TABLE users (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email text NOT NULL,
    name text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now()
);
-- One user per email, whatever its case: the database decides, so of two creates of one
-- email at once exactly one wins and the other is told 409.
CREATE UNIQUE INDEX users_email ON users (lower(email));
