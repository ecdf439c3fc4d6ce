"""usernames and emails in Unicode NFKC form

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03

Registration, login and the importer now store and compare usernames and emails in NFKC form (emails also
lower-cased), so "José" with one code point and with "e" plus a combining accent are one name. Existing rows are
rewritten to that form, except where two accounts would become one name: those are left exactly as they are and
counted in the log, never merged. ``refreshd user collisions`` lists them (it reads the live table, so it also sees
rows an older instance wrote during a rolling upgrade); an operator decides who keeps the name. A value that would
grow past the column's 255 characters is left as it is too.

The normal form is written out here rather than imported from the application: a migration must keep doing what it
did when it was written. Downgrading changes nothing (the original spellings are not kept, and any NFKC string is a
valid value for the earlier schema).
"""

import logging
import unicodedata
from collections import defaultdict
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

logger = logging.getLogger("alembic.runtime.migration")
MAX_LENGTH = 255


def _username(value: str) -> str:
    return unicodedata.normalize("NFKC", value)


def _email(value: str) -> str:
    return unicodedata.normalize("NFKC", value).lower()


def upgrade() -> None:
    connection = op.get_bind()
    rows = connection.execute(sa.text("SELECT id, username, email FROM users ORDER BY id")).all()
    owners: dict[tuple[str, str], list[int]] = defaultdict(list)
    for user_id, username, email in rows:
        owners[("username", _username(username))].append(user_id)
        owners[("email", _email(email))].append(user_id)
    colliding = {user_id for ids in owners.values() if len(ids) > 1 for user_id in ids}
    update = sa.text("UPDATE users SET username = :username, email = :email WHERE id = :id")
    changed = []
    for user_id, username, email in rows:
        new_username, new_email = _username(username), _email(email)
        if (new_username, new_email) == (username, email) or user_id in colliding:
            continue
        if len(new_username) > MAX_LENGTH or len(new_email) > MAX_LENGTH:
            logger.warning("user %s: the NFKC form of its name is too long; left as it is", user_id)
            continue
        changed.append({"id": user_id, "username": new_username, "email": new_email})
    if changed:
        connection.execute(update, changed)
    logger.info("usernames and emails in NFKC form: %d rows rewritten", len(changed))
    if colliding:
        logger.warning(
            "%d accounts share a username or email with another once normalized and were left as they are; "
            "list them with `refreshd user collisions`",
            len(colliding),
        )


def downgrade() -> None:
    pass
